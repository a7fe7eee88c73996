package index

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
)

// Entity-group transaction limits: at most 100 entities of one partition of
// one table, at most 4 MiB of payload. We leave room for the multipart
// framing the SDK adds around each entity.
const (
	maxBatchEntities = 100
	maxBatchBytes    = 3*1024*1024 + 512*1024
)

// Tables is the set of index tables under one name prefix.
type Tables struct {
	svc    *aztables.ServiceClient
	prefix string

	mu        sync.Mutex
	ensured   bool
	recreated atomic.Int64
}

// NewTables names the index tables prefix+TableEvents … in svc. It does no
// network I/O.
func NewTables(svc *aztables.ServiceClient, prefix string) *Tables {
	return &Tables{svc: svc, prefix: prefix}
}

// Name is the full name of a short table name.
func (t *Tables) Name(short string) string { return t.prefix + short }

// Client is the client of a short table name.
func (t *Tables) Client(short string) *aztables.Client { return t.svc.NewClient(t.Name(short)) }

// AllTables lists the short names of every index table.
var AllTables = []string{TableEvents, TablePostings, TableBlobs}

// Ensure creates the index tables; one that exists already is success. After
// one success it returns nil at once, until a write finds a table missing
// (see Recover); after a failure the next call tries again.
func (t *Tables) Ensure(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ensured {
		return nil
	}
	_, err := t.createAll(ctx)
	if err == nil {
		t.ensured = true
	}
	return err
}

// createAll creates every index table and says how many did not exist.
func (t *Tables) createAll(ctx context.Context) (created int, err error) {
	for _, short := range AllTables {
		_, err := t.svc.CreateTable(ctx, t.Name(short), nil)
		err = azstore.Classify(err)
		switch {
		case err == nil:
			created++
		case !errors.Is(err, azstore.ErrExists):
			return created, fmt.Errorf("index: cannot create table %q: %w", t.Name(short), err)
		}
	}
	return created, nil
}

// Recover is what a write does when storage answers that a table does not
// exist (azstore.ErrTableNotFound): it forgets that the tables were ensured
// and creates every missing one again — storage that lost one table may
// have lost them all. Its error, if any, is the storage's (a table still
// being deleted is transient). Safe to call concurrently and repeatedly.
//
// The rows a re-created table held are gone: Recreated lets a writer see
// that this happened while it was writing, and write its rows again.
func (t *Tables) Recover(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ensured = false
	created, err := t.createAll(ctx)
	t.recreated.Add(int64(created))
	if err != nil {
		return err
	}
	t.ensured = true
	return nil
}

// Verify lists the index tables (one request) and, when any is missing,
// creates it again through Recover, which Recreated then shows. A writer
// calls it before moving a checkpoint past rows it wrote: a table dropped
// after the last write into it is otherwise noticed only by the next one.
func (t *Tables) Verify(ctx context.Context) error {
	// Table names are case-insensitive but stored as created; every index
	// table sorts between prefix and prefix+"~" in either case.
	filter := fmt.Sprintf("TableName ge %s and TableName lt %s", ODataString(t.prefix), ODataString(t.prefix+"~"))
	pager := t.svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
	seen := map[string]bool{}
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("index: list tables: %w", azstore.Classify(err))
		}
		for _, tp := range page.Tables {
			if tp.Name != nil {
				seen[strings.ToLower(*tp.Name)] = true
			}
		}
	}
	for _, short := range AllTables {
		if !seen[strings.ToLower(t.Name(short))] {
			return t.Recover(ctx)
		}
	}
	return nil
}

// Recreated counts the tables Recover found missing and created again since
// NewTables. A writer that reads a different count after writing than
// before may have written rows into a table that was then dropped.
func (t *Tables) Recreated() int64 { return t.recreated.Load() }

// maxRecovers bounds how often one operation re-creates a missing table
// before it gives up with a transient error (the host retries later).
const maxRecovers = 3

// Retry runs op; when op's error is azstore.ErrTableNotFound it calls
// Recover and runs op again, up to a bound. An op that still finds its
// table missing returns an error that is also azstore.ErrTransient, so the
// invocation fails in a way the host retries: a missing table never turns
// into a skipped write. op must be safe to repeat (an upsert, or a write
// with its own If-Match). log (nil: slog.Default) says when a table was
// found missing.
func (t *Tables) Retry(ctx context.Context, log *slog.Logger, op func() error) error {
	for i := 0; ; i++ {
		err := op()
		if !errors.Is(err, azstore.ErrTableNotFound) {
			return err
		}
		if i == maxRecovers {
			return fmt.Errorf("%w: still missing after creating it %d times: %w", azstore.ErrTransient, maxRecovers, err)
		}
		if log == nil {
			log = slog.Default()
		}
		log.Warn("index: table missing; creating the index tables again", slog.String("error", err.Error()))
		if rerr := t.Recover(ctx); rerr != nil {
			return rerr
		}
	}
}

// WriteStats counts what a Writer did.
type WriteStats struct {
	Entities     int64 // entities written
	Transactions int64 // entity-group transactions submitted (singles included)
	Rejected     int64 // entities the service refused even alone as invalid (the write then failed)
}

// Writer upserts rows in entity-group transactions: it groups entities by
// table and partition, submits a group when it is full, and writes
// partitions concurrently. Upserts replace whole rows, so writing the same
// rows again leaves the table as it was. A Writer is used by one goroutine
// (Add, Flush); its submissions run on up to concurrency goroutines.
type Writer struct {
	tables      *Tables
	log         *slog.Logger
	sem         chan struct{}
	wg          sync.WaitGroup
	groups      map[groupKey]*group
	buffered    int
	maxBuffered int

	mu    sync.Mutex
	err   error
	stats WriteStats
}

type groupKey struct{ table, pk string }

type group struct {
	key     groupKey
	actions []aztables.TransactionAction
	rks     map[string]int // RowKey → index in actions: one action per RowKey
	bytes   int
}

// NewWriter returns a Writer submitting up to concurrency transactions at
// once and buffering about maxBuffered bytes of rows before it submits
// partial groups (0 means 16 MiB).
func (t *Tables) NewWriter(log *slog.Logger, concurrency, maxBuffered int) *Writer {
	if concurrency < 1 {
		concurrency = 1
	}
	if maxBuffered <= 0 {
		maxBuffered = 16 << 20
	}
	return &Writer{
		tables:      t,
		log:         log,
		sem:         make(chan struct{}, concurrency),
		groups:      map[groupKey]*group{},
		maxBuffered: maxBuffered,
	}
}

// Add buffers e for writing. A later entity with the same table, partition
// and RowKey replaces an earlier buffered one (a transaction may not hold a
// RowKey twice). It returns the first error of a submission already made,
// after which the Writer should be abandoned.
func (w *Writer) Add(ctx context.Context, e Entity) error {
	if err := w.Err(); err != nil {
		return err
	}
	k := groupKey{e.Table, e.PK}
	g := w.groups[k]
	if g == nil {
		g = &group{key: k, rks: map[string]int{}}
		w.groups[k] = g
	}
	if len(g.actions) > 0 && (len(g.actions) >= maxBatchEntities || g.bytes+len(e.Body) > maxBatchBytes) {
		w.submit(ctx, g)
		g = &group{key: k, rks: map[string]int{}}
		w.groups[k] = g
	}
	act := aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: e.Body}
	if i, dup := g.rks[e.RK]; dup {
		w.buffered += len(e.Body) - len(g.actions[i].Entity)
		g.bytes += len(e.Body) - len(g.actions[i].Entity)
		g.actions[i] = act
		return nil
	}
	g.rks[e.RK] = len(g.actions)
	g.actions = append(g.actions, act)
	g.bytes += len(e.Body)
	w.buffered += len(e.Body)
	if w.buffered > w.maxBuffered {
		w.submitFullest(ctx)
	}
	return nil
}

// Flush submits everything buffered and waits for every submission. It
// returns the first error any submission met; the Writer is reusable after
// a nil return.
func (w *Writer) Flush(ctx context.Context) error {
	w.submitAll(ctx)
	w.wg.Wait()
	return w.Err()
}

// Err is the first submission error so far.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Stats returns the counts so far.
func (w *Writer) Stats() WriteStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Writer) submitAll(ctx context.Context) {
	for k, g := range w.groups {
		delete(w.groups, k)
		w.submit(ctx, g)
	}
}

// submitFullest submits the groups holding the most rows until at most half
// of maxBuffered is left buffered. The small groups stay to fill up: a
// record has rows in up to six partitions, most of them (one caller, one IP,
// one object) sparse, and submitting every group at each overflow would cut
// their transactions short, costing more of them for the same rows.
func (w *Writer) submitFullest(ctx context.Context) {
	gs := make([]*group, 0, len(w.groups))
	for _, g := range w.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *group) int {
		if c := cmp.Compare(len(b.actions), len(a.actions)); c != 0 {
			return c
		}
		return cmp.Compare(b.bytes, a.bytes)
	})
	for _, g := range gs {
		if w.buffered <= w.maxBuffered/2 {
			break
		}
		delete(w.groups, g.key)
		w.submit(ctx, g)
	}
}

// submit hands g to a submission goroutine, waiting for a free slot.
func (w *Writer) submit(ctx context.Context, g *group) {
	if len(g.actions) == 0 {
		return
	}
	w.buffered -= g.bytes
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		w.fail(ctx.Err())
		return
	}
	w.wg.Add(1)
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		if err := w.write(ctx, g); err != nil {
			w.fail(err)
		}
	}()
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// ErrRowRefused says storage refused a row as invalid even when written
// alone (too large, a bad property). Rows are built to stay inside every
// limit whatever was logged, so this is a bug or a limit we did not know;
// either way the row is evidence: a Writer never skips it, and the ingest
// that wrote it fails without moving its checkpoint (HAZARDS 12).
var ErrRowRefused = errors.New("index: storage refused a row")

// write submits one group. A transaction that fails is written again
// entity by entity, so that the one entity the service will not take
// (azstore.ErrRejected) is named by its keys and the service's error code,
// in the log and in the error, which wraps ErrRowRefused. Any other
// failure fails the write too: a missing table is created again and the
// group rewritten (Tables.Retry), and what remains (unreachable,
// throttled, access refused) is returned. No row is ever skipped.
func (w *Writer) write(ctx context.Context, g *group) error {
	return w.tables.Retry(ctx, w.log, func() error { return w.writeOnce(ctx, g) })
}

func (w *Writer) writeOnce(ctx context.Context, g *group) error {
	client := w.tables.Client(g.key.table)
	_, err := client.SubmitTransaction(ctx, g.actions, nil)
	w.count(0, 1, 0)
	if err == nil {
		w.count(int64(len(g.actions)), 0, 0)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if azstore.IsTransient(err) {
		return fmt.Errorf("index: write %d rows to %s partition %q: %w", len(g.actions), w.tables.Name(g.key.table), g.key.pk, azstore.Classify(err))
	}
	// A failed transaction answers 202 with the inner failure in its body,
	// which the SDK does not surface: single writes name the cause.
	for _, a := range g.actions {
		_, err := client.UpsertEntity(ctx, a.Entity, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
		w.count(0, 1, 0)
		err = azstore.Classify(err)
		switch {
		case err == nil:
			w.count(1, 0, 0)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, azstore.ErrRejected):
			w.count(0, 0, 1)
			var keys struct{ PartitionKey, RowKey string }
			_ = json.Unmarshal(a.Entity, &keys)
			w.log.Error("index: row refused by storage; the checkpoint stays before it",
				slog.String("table", w.tables.Name(g.key.table)),
				slog.String("partition", keys.PartitionKey),
				slog.String("row", keys.RowKey),
				slog.String("code", azstore.ErrorCode(err)),
				slog.Int("bytes", len(a.Entity)),
				slog.String("error", err.Error()))
			return fmt.Errorf("%w: %s partition %q row %q (%d bytes, %s): %w", ErrRowRefused, w.tables.Name(g.key.table),
				keys.PartitionKey, keys.RowKey, len(a.Entity), azstore.ErrorCode(err), err)
		default:
			return fmt.Errorf("index: write row to %s partition %q: %w", w.tables.Name(g.key.table), g.key.pk, err)
		}
	}
	return nil
}

func (w *Writer) count(entities, transactions, rejected int64) {
	w.mu.Lock()
	w.stats.Entities += entities
	w.stats.Transactions += transactions
	w.stats.Rejected += rejected
	w.mu.Unlock()
}
