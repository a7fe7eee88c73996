package query

import (
	"context"
	"errors"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Events reads one page of eq: at most eq.Limit events, newest first
// across partitions and days, calling emit for each in order, and returns
// the continuation of the next page, "" when this page is the last.
//
// emit's record is valid only during the call. Memory is one storage page
// (at most 1000 rows) whatever the limit; events are handed over as they
// arrive, so a caller can stream them. A page may hold fewer events than
// the limit, even none, while a continuation is returned: a selective
// filter stops a request after MaxPages storage pages or MaxDuration. The
// duration bounds a storage read too: a read still running when it is
// spent (storage slow, or the SDK retrying) is abandoned, and the page
// ends with the events emitted so far and the continuation of where that
// read began, so the next page reads it again — every event once.
//
// An error from emit stops the page and is returned as is.
func (q *Querier) Events(ctx context.Context, eq *EventsQuery, emit func(*parse.Record) error) (string, error) {
	w := eq.Window
	var tok *token
	if eq.Continuation != "" {
		t, err := decodeToken(eq.Continuation)
		if err != nil {
			return "", err
		}
		if w, err = t.window(eq.Window, q.Limits); err != nil {
			return "", err
		}
		tok = t
	}
	p := newPlan(eq.Selector, eq.Filter, w)
	day, after, pos := 0, "", srvPos{}
	if tok != nil {
		if err := p.check(tok); err != nil {
			return "", err
		}
		day, after, pos = p.dayIndex(tok.D), tok.A, srvPos{tok.NP, tok.NR}
	}
	fromToken := !pos.empty()

	cont := func(day int, after string, pos srvPos) string {
		return (&token{V: tokenVersion, Q: p.fingerprint, F: w.From.UnixNano(), T: w.To.UnixNano(),
			D: p.days[day], A: after, NP: pos.pk, NR: pos.rk}).encode()
	}
	deadline := time.Now().Add(q.maxDuration())
	if p.kind != "" {
		return q.eventsFromPostings(ctx, eq, p, day, after, deadline, emit, func(day int, after string) string { return cont(day, after, srvPos{}) })
	}
	var (
		d       parse.Decoder
		r       row
		rec     parse.Record
		emitted int
	)
	d.Account = q.FirstAccount
	for pages := 0; day < len(p.days); pages++ {
		if pages >= q.maxPages() || pages > 0 && !time.Now().Before(deadline) {
			return cont(day, after, pos), nil
		}
		// One row more than the page needs tells whether another page follows.
		l := listing{table: p.table, filter: p.partitionFilter(p.days[day], after), top: eq.Limit - emitted + 1}
		readCtx, cancel := context.WithDeadline(ctx, deadline)
		ents, next, err := q.page(readCtx, l, pos)
		spent := readCtx.Err() != nil && ctx.Err() == nil // before cancel, which sets it too
		cancel()
		if err != nil && spent {
			// The budget ran out during the read, not the caller's patience:
			// nothing of it was emitted, so the next page starts where it did.
			return cont(day, after, pos), nil
		}
		if err != nil {
			if fromToken && pages == 0 && !azstore.IsTransient(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return "", badToken("storage refused its position")
			}
			return "", err
		}
		for i, e := range ents {
			if err := decodeRow(e, &r); err != nil {
				return "", err
			}
			if err := r.record(&d, &rec); err != nil {
				return "", err
			}
			if err := emit(&rec); err != nil {
				return "", err
			}
			if emitted++; emitted < eq.Limit {
				continue
			}
			switch {
			case i < len(ents)-1 || !next.empty():
				return cont(day, r.RowKey, srvPos{}), nil
			case day+1 < len(p.days):
				return cont(day+1, "", srvPos{}), nil
			default:
				return "", nil
			}
		}
		if next.empty() {
			day, after, pos = day+1, "", srvPos{}
			continue
		}
		pos = next
	}
	return "", nil
}

// eventsFromPostings is Events for a caller, object or IP: per day, the
// key's first matching entries after the token's RowKey, newest first
// (dayPage: memory is the page, not the key's day); the page's Events rows
// are read by point reads, concurrently, and emitted in order. While a
// day's events are read, the next day's first page of postings is read
// too: a page that needs more days waits for one read less each.
//
// The deadline bounds storage reads as in Events: a read still running when
// it is spent is abandoned and the page ends with the continuation of where
// that read began (nothing of it was emitted). The posting entries one
// request decodes are bounded by MaxLookupEntries.
func (q *Querier) eventsFromPostings(ctx context.Context, eq *EventsQuery, p *plan, day int, after string, deadline time.Time,
	emit func(*parse.Record) error, cont func(day int, after string) string) (string, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel() // ends a prefetch still running
	spent := func() bool { return dctx.Err() != nil && ctx.Err() == nil }
	budget := newRowBudget(q.maxLookupEntries(), "this lookup")
	type dayRead struct {
		day  int
		ps   []posting
		more bool
		err  error
		done chan struct{}
	}
	read := func(i int, after string, k int) *dayRead {
		r := &dayRead{day: i, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.ps, r.more, r.err = q.dayPage(dctx, p, p.days[i], after, k, budget)
		}()
		return r
	}
	var (
		next    *dayRead
		d       parse.Decoder
		rec     parse.Record
		emitted int
	)
	d.Account = q.FirstAccount
	for reads := 0; day < len(p.days); reads++ {
		if reads >= q.maxPages() || reads > 0 && !time.Now().Before(deadline) {
			return cont(day, after), nil
		}
		need := eq.Limit - emitted
		cur := next
		if cur == nil || cur.day != day || after != "" {
			cur = read(day, after, need)
		}
		next = nil
		<-cur.done
		ps, more, err := cur.ps, cur.more, cur.err
		if err != nil && spent() {
			return cont(day, after), nil
		}
		if err != nil {
			return "", err
		}
		if len(ps) > need { // a prefetched page, read for a whole limit
			ps, more = ps[:need], true
		}
		if !more && day+1 < len(p.days) && reads+1 < q.maxPages() {
			next = read(day+1, "", eq.Limit)
		}
		if len(ps) > 0 {
			rows, err := q.fetchEvents(dctx, p.days[day], ps)
			if err != nil && spent() {
				return cont(day, after), nil
			}
			if err != nil {
				return "", err
			}
			for _, r := range rows {
				if r == nil {
					continue
				}
				if err := r.record(&d, &rec); err != nil {
					return "", err
				}
				if err := emit(&rec); err != nil {
					return "", err
				}
				emitted++
			}
			after = ps[len(ps)-1].rk
		}
		if !more {
			day, after = day+1, ""
		}
		if emitted >= eq.Limit {
			if day < len(p.days) {
				return cont(day, after), nil
			}
			return "", nil
		}
	}
	return "", nil
}
