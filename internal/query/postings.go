package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
)

// postingRow is a Postings row as the service returns it.
type postingRow struct {
	RowKey     string `json:"RowKey"`
	V          *int   `json:"V"`
	P          []byte `json:"P"`
	P1, P2, P3 []byte
	P4, P5, P6 []byte
	P7, P8, P9 []byte
	P10, P11   []byte
	P12, P13   []byte
	P14, P15   []byte
}

func (r *postingRow) payload() []byte {
	return joinParts(r.P, r.P1, r.P2, r.P3, r.P4, r.P5, r.P6, r.P7, r.P8, r.P9, r.P10, r.P11, r.P12, r.P13, r.P14, r.P15)
}

// posting is one entry found for a query, with its Events RowKey.
type posting struct {
	rk string
	e  index.Entry
}

// dayEntries reads the posting rows of p's key on day and returns the
// entries that match p, newest first (by the Events RowKey they point at),
// each once: a chunk read twice with different chunk boundaries (racing
// writers, a retry with another chunk size) has its records in two
// posting rows. budget, when not nil, is charged one per entry.
func (q *Querier) dayEntries(ctx context.Context, p *plan, day string, budget *rowBudget) ([]posting, error) {
	var (
		out []posting
		es  []index.Entry
		pr  postingRow
	)
	l := listing{table: index.TablePostings, filter: p.partitionFilter(day, "")}
	err := q.scan(ctx, l, nil, func(ent []byte) error {
		pr = postingRow{}
		if err := json.Unmarshal(ent, &pr); err != nil {
			return fmt.Errorf("query: unreadable posting row: %w", err)
		}
		if pr.V == nil || *pr.V != index.Layout {
			return ErrOldLayout
		}
		key, source, ok := index.PostingKey(pr.RowKey)
		if !ok || key != p.key {
			return nil
		}
		var err error
		if es, err = index.DecodePosting(es[:0], pr.payload()); err != nil {
			return fmt.Errorf("query: posting %s: %w", pr.RowKey, err)
		}
		if err := budget.spend(len(es)); err != nil {
			return err
		}
		for i := range es {
			es[i].Source = source
			rk := es[i].EventRowKey()
			if p.matchesEntry(&es[i], rk) {
				out = append(out, posting{rk: rk, e: es[i]})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rk < out[j].rk })
	// Dedupe: the same RowKey is the same record (its lineage and offset).
	n := 0
	for i := range out {
		if i == 0 || out[i].rk != out[n-1].rk {
			out[n] = out[i]
			n++
		}
	}
	return out[:n], nil
}

// fetchConcurrency bounds the point reads of one page in flight.
const fetchConcurrency = 16

// fetchEvents reads the Events rows of ps (all of day) by point reads,
// concurrently, in ps's order. A point read is what Table Storage serves
// best, and Azurite too (an index lookup, where any filter is a scan of
// the whole table: a page read 14 RowKeys a request was faster on a
// 14,000-event table and slower on a 100,000-event one). A row not found
// is nil: its posting was written but its chunk was not committed yet (the
// rows of a chunk are written concurrently), or retention has just deleted
// it.
func (q *Querier) fetchEvents(ctx context.Context, day string, ps []posting) ([]*row, error) {
	out := make([]*row, len(ps))
	client := q.Tables.Client(index.TableEvents)
	err := q.parallelN(ctx, len(ps), fetchConcurrency, func(ctx context.Context, i int) error {
		resp, err := client.GetEntity(ctx, ps[i].e.EventPartition(day), ps[i].rk, nil)
		if err != nil {
			if err = azstore.Classify(err); errors.Is(err, azstore.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("query: read %s: %w", q.Tables.Name(index.TableEvents), err)
		}
		r := &row{}
		if err := decodeRow(resp.Value, r); err != nil {
			return err
		}
		out[i] = r
		return nil
	})
	return out, err
}

// layoutCheck remembers, for a while, that no rows of layout 1 are left.
type layoutCheck struct {
	mu      sync.Mutex
	cleanAt time.Time
}

// CheckLayout returns ErrOldLayout while a table of layout 1 (ByCaller,
// ByIp, ByObject) still holds rows: `handler backfill` rebuilds the index
// and drops them. Callers serving queries call it first: a caller, IP or
// object query would otherwise find no postings for what layout 1
// indexed (an Events row of layout 1 is refused as it is read). A clean
// answer is remembered for a minute; up to three requests otherwise.
func (q *Querier) CheckLayout(ctx context.Context) error {
	q.layout.mu.Lock()
	clean := time.Since(q.layout.cleanAt) < time.Minute
	q.layout.mu.Unlock()
	if clean {
		return nil
	}
	old, err := q.Tables.LegacyRows(ctx)
	if err != nil {
		return err
	}
	if old {
		return ErrOldLayout
	}
	q.layout.mu.Lock()
	q.layout.cleanAt = time.Now()
	q.layout.mu.Unlock()
	return nil
}
