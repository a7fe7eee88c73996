package query

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
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

// Storage pages of posting rows are bounded in bytes, not only in rows:
// the SDK holds a page about three times over while it decodes it (the
// body, a map per entity, the entity again as JSON), and a row is up to
// ~90 KB of JSON as this kvaudit writes it but up to 1.3 MB as an older
// one did or as anyone with Table Data Contributor can plant. A read
// starts with postingFirstTop rows and asks for more a page, up to
// postingMaxTop, only while the rows it has seen are small: about
// postingPageBytes of rows a page.
const (
	postingFirstTop  = 6
	postingMaxTop    = 100
	postingPageBytes = 2 << 20
)

// denseRow is the entries from which a posting row is dense: a page that
// meets one lists the rest of the day's rows and reads them newest span
// first (dayPage).
const denseRow = 250

// postingConcurrency bounds the reads of posting rows one request has in
// flight (days of a key's stats, mass-retrieval candidates): each holds a
// storage page.
const postingConcurrency = 2

// nextTop is the $top of a posting page after rows of at most largest
// bytes (JSON) were seen.
func nextTop(largest int) int {
	return max(postingFirstTop/2, min(postingMaxTop, postingPageBytes/max(largest, 1)))
}

// span is what of a day's posting rows a read of p needs: the record hours
// [first, last] (0–23) and the entries' inverted ticks [lo, hi] (lo the
// newest). timed is false when the span is the whole day.
type span struct {
	first, last int
	lo, hi      int64
	timed       bool
}

// span is the part of day that a posting read of p needs: the window's,
// and no later than after (an Events RowKey on day) when it is set.
func (p *plan) span(day, after string) span {
	sp := span{first: 0, last: 23}
	d, err := time.Parse(index.DayLayout, day)
	if err != nil {
		return sp
	}
	from, to := maxTime(p.from, d), minTime(p.to, d.Add(24*time.Hour))
	if t, ok := index.RowKeyTime(after); ok && after != "" && t.Before(to) {
		// Entries after the token are at or before its time.
		to = t.Add(100 * time.Nanosecond)
	}
	sp.timed = from.After(d) || to.Before(d.Add(24*time.Hour))
	if !to.After(from) {
		to = from.Add(100 * time.Nanosecond)
	}
	sp.first = int(from.Sub(d) / time.Hour)
	sp.last = min(int(to.Add(-time.Nanosecond).Sub(d)/time.Hour), 23)
	sp.lo, sp.hi = index.InvTicks(to.Add(-100*time.Nanosecond)), index.InvTicks(from)
	return sp
}

// postingFilter selects the posting rows of p's key on day whose entries
// can lie in sp: the rows of its hours whose span (T0, T1) meets it — one
// RowKey range, newest hour first — and any row written before rows
// carried their hour, which sort before them.
func (p *plan) postingFilter(day string, sp span) string {
	var b strings.Builder
	b.WriteString("PartitionKey eq ")
	b.WriteString(index.ODataString(p.kind + "|" + day))
	b.WriteString(" and RowKey ge ")
	b.WriteString(index.ODataString(p.key + "|"))
	b.WriteString(" and RowKey lt ")
	b.WriteString(index.ODataString(p.key + "}")) // '|' + 1
	if sp.timed {
		// Inside the key's range the service seeks to, a predicate on the
		// rows it returns.
		b.WriteString(" and (RowKey lt ")
		b.WriteString(index.ODataString(index.PostingLegacyEnd(p.key)))
		b.WriteString(" or RowKey ge ")
		b.WriteString(index.ODataString(index.PostingHourPrefix(p.key, sp.last)))
		b.WriteString(" and RowKey lt ")
		hi := index.PostingHourPrefix(p.key, sp.first)
		b.WriteString(index.ODataString(hi[:len(hi)-1] + "}"))
		b.WriteString(" and T0 le ")
		b.WriteString(index.ODataString(index.SpanText(sp.hi)))
		b.WriteString(" and T1 ge ")
		b.WriteString(index.ODataString(index.SpanText(sp.lo)))
		b.WriteString(")")
	}
	return b.String()
}

// postingRows reads the posting rows of l in RowKey order, page by page
// (bounded in bytes, see postingFirstTop), and calls fn with each row of
// p's key; fn returns false to end the read, when no more pages are read.
// It returns the service's position after the last page read.
func (q *Querier) postingRows(ctx context.Context, p *plan, l listing, pages int, fn func(pr *index.PostingRow) (bool, error)) (srvPos, error) {
	var (
		pos     srvPos
		pr      index.PostingRow
		largest int
	)
	l.top = postingFirstTop
	for n := 0; pages <= 0 || n < pages; n++ {
		ents, next, err := q.page(ctx, l, pos)
		if err != nil {
			return srvPos{}, err
		}
		for _, ent := range ents {
			largest = max(largest, len(ent))
			switch err := index.ReadPostingRow(ent, &pr); {
			case errors.Is(err, index.ErrOldLayoutRow):
				return srvPos{}, ErrOldLayout
			case err != nil:
				return srvPos{}, fmt.Errorf("query: %w", err)
			case pr.Parsed.Key != p.key:
				continue
			}
			if more, err := fn(&pr); err != nil || !more {
				return srvPos{}, err
			}
		}
		if next.empty() {
			return srvPos{}, nil
		}
		if next == pos {
			return srvPos{}, fmt.Errorf("query: read %s: the service repeated its continuation", q.Tables.Name(l.table))
		}
		pos = next
		l.top = nextTop(largest)
	}
	return pos, nil
}

// entries decodes pr's entries into es, charging budget one per entry.
func entries(pr *index.PostingRow, es []index.Entry, budget *rowBudget) ([]index.Entry, error) {
	es, err := pr.Entries(es[:0])
	if err != nil {
		return es, fmt.Errorf("query: %w", err)
	}
	return es, budget.spend(len(es))
}

// eachEntry calls fn once for each entry of p's key on day that matches p,
// in no particular order. A record read twice by writers that cut its blob
// into chunks differently (a race, another chunk size) is in two posting
// rows of its lineage and hour, which sort together, by chunk: entries are
// told apart by offset within that run of rows, and the offsets kept are
// only those at or past the current row's chunk (no later row can repeat
// an earlier offset), so memory stays one chunk's entries of the key.
func (q *Querier) eachEntry(ctx context.Context, p *plan, day string, budget *rowBudget, fn func(e *index.Entry, rk string)) error {
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
		es     []index.Entry
	)
	group.hour = -2
	l := listing{table: index.TablePostings, filter: p.postingFilter(day, p.span(day, ""))}
	_, err := q.postingRows(ctx, p, l, 0, func(pr *index.PostingRow) (bool, error) {
		rk := pr.Parsed
		var err error
		if es, err = entries(pr, es, budget); err != nil {
			return false, err
		}
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
		return true, nil
	})
	return err
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
// Memory is the k+1 postings kept, one storage page and one hour's list
// of rows, however many entries the key has that day; and it decodes only
// rows that can hold one of the page's entries. It reads the rows of the
// span the page needs (the window's hours, and the rows whose T0…T1 meets
// it) in RowKey order while they are sparse, skipping those older than
// all it keeps; at the first dense row (denseRow entries: a flood) it
// lists the rest without their entries, an hour at a time, newest hour
// first, and reads those rows by point reads (a few at a time), newest
// span first, until no row left can hold an entry newer than the k+1
// kept. So a key flooded with a million requests in one hour costs a page
// the rows of its own minutes, not the hour. budget, when not nil, is
// charged one per entry decoded (the rows listed are a thousandth of a
// dense hour's entries).
func (q *Querier) dayPage(ctx context.Context, p *plan, day, after string, k int, budget *rowBudget) ([]posting, bool, error) {
	dayStart, err := time.Parse(index.DayLayout, day)
	if err != nil {
		return nil, false, err
	}
	h := &pageHeap{in: map[string]struct{}{}, max: k + 1}
	sp := p.span(day, after)
	// Once k+1 are kept, a row is of no use when its newest entry (T0) is
	// older than all of them, and so is every row of an hour that ends
	// before them.
	hourDone := func(hour int) bool {
		// The oldest kept is newer than every entry of the hour: its
		// inverted ticks are at most those of the hour's end.
		return hour >= 0 && h.full() && h.items[0].e.InvTicks <= index.InvTicks(dayStart.Add(time.Duration(hour+1)*time.Hour))
	}
	useless := func(t0 string) bool {
		if t0 == "" || !h.full() {
			return false
		}
		inv, err := strconv.ParseInt(t0, 10, 64)
		return err == nil && inv > h.items[0].e.InvTicks
	}
	var es []index.Entry
	take := func(pr *index.PostingRow) error {
		var err error
		if es, err = entries(pr, es, budget); err != nil {
			return err
		}
		for i := range es {
			rk := es[i].EventRowKey()
			if rk <= after || !p.matchesEntry(&es[i], rk) {
				continue
			}
			h.offer(posting{rk: rk, e: es[i]})
		}
		return nil
	}

	// Rows in RowKey order, entries and all, while they are sparse: a
	// key's rows of an hour are ordered by lineage and chunk, not time,
	// which costs little while rows hold few entries. At the first dense
	// row (a key with hundreds of requests in one chunk: a flood) the
	// rest is listed instead.
	l := listing{table: index.TablePostings, filter: p.postingFilter(day, sp)}
	var last string
	stopped, dense := false, false
	_, err = q.postingRows(ctx, p, l, 0, func(pr *index.PostingRow) (bool, error) {
		if hourDone(pr.Parsed.Hour) {
			stopped = true
			return false, nil
		}
		if pr.Parsed.Hour >= 0 && pr.N != nil && *pr.N >= denseRow {
			dense = true
			return false, nil
		}
		last = pr.RowKey
		if useless(pr.T0) {
			return true, nil
		}
		return true, take(pr)
	})
	if err != nil {
		return nil, false, err
	}
	if !stopped && dense {
		// The rest: listed an hour at a time (RowKey, span), then read
		// newest span first.
		ml := listing{table: index.TablePostings, filter: l.filter, sel: selectColumns("RowKey", "T0")}
		if last != "" {
			ml.filter += " and RowKey gt " + index.ODataString(last)
		}
		var (
			hour  = -2
			group []rowSpan
			done  bool
		)
		flush := func() error {
			sort.SliceStable(group, func(i, j int) bool { return group[i].T0 < group[j].T0 })
			for len(group) > 0 && !done {
				n := 0
				for n < len(group) && n < fetchWave && !useless(group[n].T0) {
					n++
				}
				if n == 0 {
					break // sorted by T0: every row left is older still
				}
				rows, err := q.postingPoints(ctx, day, p, group[:n])
				if err != nil {
					return err
				}
				for i := range rows {
					if rows[i] != nil {
						if err := take(rows[i]); err != nil {
							return err
						}
					}
				}
				group = group[n:]
			}
			group = group[:0]
			return nil
		}
		err = q.scan(ctx, ml, nil, func(ent []byte) error {
			var r rowSpan
			if err := json.Unmarshal(ent, &r); err != nil {
				return fmt.Errorf("query: unreadable posting row: %w", err)
			}
			prk, ok := index.ParsePostingRK(r.RowKey)
			if !ok || prk.Key != p.key {
				return nil
			}
			if prk.Hour != hour {
				if err := flush(); err != nil {
					return err
				}
				if hourDone(prk.Hour) {
					done = true
					return errStopScan
				}
				hour = prk.Hour
			}
			group = append(group, r)
			return nil
		})
		if errors.Is(err, errStopScan) {
			err = nil
		}
		if err == nil && !done {
			err = flush()
		}
		if err != nil {
			return nil, false, err
		}
	}
	out := h.items
	sort.Slice(out, func(i, j int) bool { return out[i].rk < out[j].rk })
	if len(out) > k {
		return out[:k], true, nil
	}
	return out, false, nil
}

var errStopScan = errors.New("stop")

// rowSpan is a posting row as listed without its entries.
type rowSpan struct {
	RowKey string `json:"RowKey"`
	T0     string `json:"T0"` // "" on a row written before rows carried their span
}

// fetchWave is how many posting rows a page reads at once by point reads.
const fetchWave = 8

// postingPoints reads the posting rows rs of p's key on day by point reads,
// concurrently; a row gone meanwhile (retention) is nil.
func (q *Querier) postingPoints(ctx context.Context, day string, p *plan, rs []rowSpan) ([]*index.PostingRow, error) {
	out := make([]*index.PostingRow, len(rs))
	client := q.Tables.Client(index.TablePostings)
	err := q.parallelN(ctx, len(rs), fetchWave, func(ctx context.Context, i int) error {
		resp, err := client.GetEntity(ctx, p.kind+"|"+day, rs[i].RowKey, nil)
		if err != nil {
			if err = azstore.Classify(err); errors.Is(err, azstore.ErrNotFound) {
				return nil
			}
			return fmt.Errorf("query: read %s: %w", q.Tables.Name(index.TablePostings), err)
		}
		var pr index.PostingRow
		switch err := index.ReadPostingRow(resp.Value, &pr); {
		case errors.Is(err, index.ErrOldLayoutRow):
			return ErrOldLayout
		case err != nil:
			return fmt.Errorf("query: %w", err)
		}
		out[i] = &pr
		return nil
	})
	return out, err
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
