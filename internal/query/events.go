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
	var (
		r       row
		rec     parse.Record
		emitted int
	)
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
			if !p.matches(&r) {
				continue
			}
			r.record(&rec)
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
