package query

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
)

// posting is one entry found for a query, with its Events RowKey.
type posting struct {
	rk string
	e  index.Entry
}

// postingTop is how many posting rows one storage page asks for. A row is
// at most ~90 KB of JSON, and the SDK holds a page about three times over
// while it decodes it (the body, a map per entity, the entity again as
// JSON): 32 rows keep a page under ~10 MB whatever the key, where the
// service's default of 1000 could be 90 MB.
const postingTop = 32

// hourSpan is the record hours [first, last] (0–23) of day that a
// posting read of p needs: the window's, and no later than the hour of
// after (an Events RowKey on day) when it is set.
func (p *plan) hourSpan(day, after string) (first, last int) {
	d, err := time.Parse(index.DayLayout, day)
	if err != nil {
		return 0, 23
	}
	first, last = 0, 23
	if p.from.After(d) {
		first = int(p.from.Sub(d) / time.Hour)
	}
	if end := p.to.Add(-time.Nanosecond); end.Before(d.Add(24 * time.Hour)) {
		last = int(end.Sub(d) / time.Hour)
	}
	if t, ok := index.RowKeyTime(after); ok && after != "" && !t.Before(d) && t.Before(d.Add(24*time.Hour)) {
		last = min(last, int(t.Sub(d)/time.Hour))
	}
	return max(first, 0), min(last, 23)
}

// postingFilter selects the posting rows of p's key on day whose entries
// can lie in hours [first, last]: the rows of those hours, one RowKey
// range (newest hour first), and any row written before rows carried their
// hour, which sort before them.
func (p *plan) postingFilter(day string, first, last int) string {
	var b strings.Builder
	b.WriteString("PartitionKey eq ")
	b.WriteString(index.ODataString(p.kind + "|" + day))
	b.WriteString(" and RowKey ge ")
	b.WriteString(index.ODataString(p.key + "|"))
	b.WriteString(" and RowKey lt ")
	b.WriteString(index.ODataString(p.key + "}")) // '|' + 1
	if first > 0 || last < 23 {
		// Inside the key's range the service seeks to, a predicate on the
		// rows it returns.
		b.WriteString(" and (RowKey lt ")
		b.WriteString(index.ODataString(index.PostingLegacyEnd(p.key)))
		b.WriteString(" or RowKey ge ")
		b.WriteString(index.ODataString(index.PostingHourPrefix(p.key, last)))
		b.WriteString(" and RowKey lt ")
		hi := index.PostingHourPrefix(p.key, first)
		b.WriteString(index.ODataString(hi[:len(hi)-1] + "}"))
		b.WriteString(")")
	}
	return b.String()
}

// scanPostings reads the posting rows of p's key on day for hours
// [first, last], in RowKey order (rows without an hour first, then the
// newest hour first), and calls fn with each row and its entries, which
// are valid only during the call. Before a row's entries are decoded,
// stop (when not nil) may end the scan: no more rows are decoded and no
// more storage pages read. budget, when not nil, is charged one per entry
// decoded. Memory is one storage page (postingTop rows) and one row's
// entries, whatever the key's day holds.
func (q *Querier) scanPostings(ctx context.Context, p *plan, day string, first, last int, budget *rowBudget,
	stop func(rk index.PostingRK) bool, fn func(rk index.PostingRK, es []index.Entry)) error {
	l := listing{table: index.TablePostings, filter: p.postingFilter(day, first, last), top: postingTop}
	var (
		es []index.Entry
		pr index.PostingRow
	)
	errStop := errors.New("stop")
	err := q.scan(ctx, l, nil, func(ent []byte) error {
		switch err := index.ReadPostingRow(ent, &pr); {
		case errors.Is(err, index.ErrOldLayoutRow):
			return ErrOldLayout
		case err != nil:
			return fmt.Errorf("query: %w", err)
		case pr.Parsed.Key != p.key:
			return nil
		case stop != nil && stop(pr.Parsed):
			return errStop
		}
		var err error
		if es, err = pr.Entries(es[:0]); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if err := budget.spend(len(es)); err != nil {
			return err
		}
		fn(pr.Parsed, es)
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// eachEntry calls fn once for each entry of p's key on day that matches p,
// in no particular order. A record read twice by writers that cut its blob
// into chunks differently (a race, another chunk size) is in two posting
// rows of its lineage and hour, which sort together, by chunk: entries are
// told apart by offset within that run of rows, and the offsets kept are
// only those at or past the current row's chunk (no later row can repeat
// an earlier offset), so memory stays one chunk's entries of the key.
func (q *Querier) eachEntry(ctx context.Context, p *plan, day string, budget *rowBudget, fn func(e *index.Entry, rk string)) error {
	first, last := p.hourSpan(day, "")
	var (
		group struct {
			hour   int
			source string
		}
		seen = map[int64]struct{}{}
		// A chunk written both before rows carried their hour (an older
		// kvaudit) and after is in a row without an hour, which sorts
		// first, and in rows with one: the entries of the former are kept
		// to be told apart from the latter.
		legacy = map[lineageOffset]struct{}{}
	)
	group.hour = -2
	return q.scanPostings(ctx, p, day, first, last, budget, nil, func(rk index.PostingRK, es []index.Entry) {
		if rk.Hour != group.hour || rk.Source != group.source {
			group.hour, group.source = rk.Hour, rk.Source
			clear(seen)
		} else {
			for off := range seen {
				if off < rk.Chunk {
					delete(seen, off)
				}
			}
		}
		for i := range es {
			if _, dup := seen[es[i].Offset]; dup {
				continue
			}
			seen[es[i].Offset] = struct{}{}
			lk := lineageOffset{rk.Source, es[i].Offset}
			if rk.Hour < 0 {
				legacy[lk] = struct{}{}
			} else if _, dup := legacy[lk]; dup {
				continue
			}
			erk := es[i].EventRowKey()
			if p.matchesEntry(&es[i], erk) {
				fn(&es[i], erk)
			}
		}
	})
}

// lineageOffset names a record: its blob lineage and byte offset.
type lineageOffset struct {
	source string
	offset int64
}

// pageHeap keeps the k+1 newest postings offered (the smallest Events
// RowKeys), each RowKey once: a max-heap by RowKey, so the oldest kept is
// at the top, to be dropped for a newer one.
type pageHeap struct {
	items []posting
	in    map[string]struct{}
	max   int
}

func (h *pageHeap) Len() int           { return len(h.items) }
func (h *pageHeap) Less(i, j int) bool { return h.items[i].rk > h.items[j].rk }
func (h *pageHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *pageHeap) Push(x any)         { h.items = append(h.items, x.(posting)) }
func (h *pageHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

func (h *pageHeap) offer(ps posting) {
	if _, dup := h.in[ps.rk]; dup {
		return
	}
	if len(h.items) == h.max {
		if ps.rk >= h.items[0].rk {
			return
		}
		delete(h.in, heap.Pop(h).(posting).rk)
	}
	h.in[ps.rk] = struct{}{}
	heap.Push(h, ps)
}

func (h *pageHeap) full() bool { return len(h.items) == h.max }

// dayPage returns the first k postings of p's key on day that match p and
// come after the Events RowKey after ("" for the day's newest), newest
// first, each once, and whether more follow on that day.
//
// Memory is the k+1 postings kept and one storage page, however many
// entries the key has that day: rows are read newest hour first, and
// reading stops at the first hour whose entries are all older than the
// k+1 kept. budget, when not nil, is charged one per entry read.
func (q *Querier) dayPage(ctx context.Context, p *plan, day, after string, k int, budget *rowBudget) ([]posting, bool, error) {
	dayStart, err := time.Parse(index.DayLayout, day)
	if err != nil {
		return nil, false, err
	}
	h := &pageHeap{in: map[string]struct{}{}, max: k + 1}
	first, last := p.hourSpan(day, after)
	// Every entry of a row of hour h, and of every row after it, is of
	// hour h or an earlier one: once k+1 are kept, all newer than h's end,
	// no later row can hold one of the page's entries.
	done := func(rk index.PostingRK) bool {
		if rk.Hour < 0 || !h.full() {
			return false
		}
		t, _ := index.RowKeyTime(h.items[0].rk)
		return !t.Before(dayStart.Add(time.Duration(rk.Hour+1) * time.Hour))
	}
	err = q.scanPostings(ctx, p, day, first, last, budget, done, func(_ index.PostingRK, es []index.Entry) {
		for i := range es {
			rk := es[i].EventRowKey()
			if rk <= after || !p.matchesEntry(&es[i], rk) {
				continue
			}
			h.offer(posting{rk: rk, e: es[i]})
		}
	})
	if err != nil {
		return nil, false, err
	}
	out := h.items
	sort.Slice(out, func(i, j int) bool { return out[i].rk < out[j].rk })
	if len(out) > k {
		return out[:k], true, nil
	}
	return out, false, nil
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
