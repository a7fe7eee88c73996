package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
)

// Querier answers queries from the index tables. Its zero-valued limits
// take the documented defaults. It is safe for concurrent use.
//
// Errors: a *ParamError is the caller's mistake (including a continuation
// that does not fit the query and a scan over MaxScanRows); an error
// matching azstore.ErrTransient means storage could not be reached or
// throttled beyond the SDK's retries, and a retry later may succeed; a
// context error is returned as is; anything else is unexpected.
type Querier struct {
	Tables *index.Tables
	Limits Limits
	// FirstAccount is the first logs account's name: an event's
	// source.account for a blob whose identity names no account (see
	// parse.BlobID).
	FirstAccount string
	// Regions are the logs accounts' regions by account name, for the
	// vault list.
	Regions map[string]string
	// MaxPages bounds the storage pages one events request reads (default
	// 64: every day of a 31-day window once, twice over). A request that
	// reaches it answers the events found so far with a continuation, so a
	// selective filter over a busy key costs several short requests rather
	// than one long one.
	MaxPages int
	// MaxDuration bounds, likewise, the time one events request spends
	// reading (default 20 s; the Functions host gives an HTTP request 230 s),
	// storage reads included: one still running when it is spent is
	// abandoned, and the next page reads it again.
	MaxDuration time.Duration
	// MaxScanRows bounds the index rows a scanning stats or detections
	// query reads (default 500 000); past it the query is refused with a
	// *ParamError asking for a narrower window.
	MaxScanRows int
	// MaxLookupEntries bounds the posting entries one events request for a
	// caller, IP or object decodes (default 2,000,000); past it the
	// request is refused with a *ParamError asking for a narrower window.
	// A page reads the key's newest hours first and stops as soon as no
	// older hour can hold an entry it needs, so only a key with that many
	// entries in the hours of one page meets it. Memory does not depend
	// on it: a page keeps its own entries and one storage page.
	MaxLookupEntries int
	// Concurrency bounds the storage requests one stats or detections query
	// has in flight (default 8).
	Concurrency int

	layout layoutCheck
}

func (q *Querier) maxPages() int {
	if q.MaxPages <= 0 {
		return 64
	}
	return q.MaxPages
}

func (q *Querier) maxDuration() time.Duration {
	if q.MaxDuration <= 0 {
		return 20 * time.Second
	}
	return q.MaxDuration
}

func (q *Querier) maxScanRows() int {
	if q.MaxScanRows <= 0 {
		return 500_000
	}
	return q.MaxScanRows
}

func (q *Querier) maxLookupEntries() int {
	if q.MaxLookupEntries <= 0 {
		return 2_000_000
	}
	return q.MaxLookupEntries
}

func (q *Querier) concurrency() int {
	if q.Concurrency <= 0 {
		return 8
	}
	return q.Concurrency
}

// srvPos is Table Storage's own continuation inside one filter.
type srvPos struct{ pk, rk string }

func (p srvPos) empty() bool { return p.pk == "" && p.rk == "" }

// listing is one filtered read of one table.
type listing struct {
	table  string // short name
	filter string
	sel    string // $select, "" for every property
	top    int    // $top, 0 for the service's maximum (1000)
}

// page reads one page of l from pos. A table that does not exist yet holds
// nothing: that is an empty page, not an error.
func (q *Querier) page(ctx context.Context, l listing, pos srvPos) ([][]byte, srvPos, error) {
	opts := &aztables.ListEntitiesOptions{Filter: &l.filter}
	if l.sel != "" {
		opts.Select = &l.sel
	}
	if l.top > 0 {
		top := int32(min(l.top, 1000))
		opts.Top = &top
	}
	if pos.pk != "" {
		opts.NextPartitionKey = &pos.pk
	}
	if pos.rk != "" {
		opts.NextRowKey = &pos.rk
	}
	resp, err := q.Tables.Client(l.table).NewListEntitiesPager(opts).NextPage(ctx)
	if err != nil {
		err = azstore.Classify(err)
		if errors.Is(err, azstore.ErrNotFound) {
			return nil, srvPos{}, nil
		}
		return nil, srvPos{}, fmt.Errorf("query: read %s: %w", q.Tables.Name(l.table), err)
	}
	var next srvPos
	if resp.NextPartitionKey != nil {
		next.pk = *resp.NextPartitionKey
	}
	if resp.NextRowKey != nil {
		next.rk = *resp.NextRowKey
	}
	return resp.Entities, next, nil
}

// scan reads every row of l, page by page, calling fn for each; it stops
// at the first error fn returns. budget, when not nil, is charged one per
// row and refuses the query once spent.
func (q *Querier) scan(ctx context.Context, l listing, budget *rowBudget, fn func(entity []byte) error) error {
	var pos srvPos
	for {
		ents, next, err := q.page(ctx, l, pos)
		if err != nil {
			return err
		}
		if err := budget.spend(len(ents)); err != nil {
			return err
		}
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
		if next.empty() {
			return nil
		}
		if next == pos {
			return fmt.Errorf("query: read %s: the service repeated its continuation", q.Tables.Name(l.table))
		}
		pos = next
	}
}

// rowBudget bounds the rows a scanning query reads, across goroutines.
type rowBudget struct {
	mu     sync.Mutex
	left   int
	what   string
	parent *rowBudget // charged too, when not nil
}

func newRowBudget(n int, what string) *rowBudget { return &rowBudget{left: n, what: what} }

// sub is a budget of n rows of its own that also charges b.
func (b *rowBudget) sub(n int, what string) *rowBudget {
	return &rowBudget{left: n, what: what, parent: b}
}

func (b *rowBudget) spend(n int) error {
	if b == nil {
		return nil
	}
	if err := b.parent.spend(n); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left -= n
	if b.left < 0 {
		return &ParamError{Msg: b.what + " reads more index rows than this deployment allows in one request; narrow from and to"}
	}
	return nil
}

// spent reports whether b itself (not its parent) ran out.
func (b *rowBudget) spent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left < 0
}

// parallel runs fn for each of n jobs on up to q.concurrency() goroutines
// and returns the first error; after one, jobs not started are skipped.
func (q *Querier) parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	return q.parallelN(ctx, n, q.concurrency(), fn)
}

// parallelN is parallel with its own bound.
func (q *Querier) parallelN(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, conc)
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// The caller's context ended (ours is only cancelled after an error).
		return ctx.Err()
	}
	return first
}
