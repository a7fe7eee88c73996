package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

// Engine evaluates detections after indexing and delivers each new
// finding once. Safe for concurrent use; one per process.
//
// When it evaluates: after each BlobTrigger that indexed records (the
// blob's vault, the days its records can lie in), and on every CatchUp
// tick (every vault's recent days, and the days of the blobs the tick
// read). A vault-day is evaluated only when its hourly request totals
// (from the per-hour counts) or the tuning changed since its last
// complete evaluation, which the state table records: so a tick costs one
// small counts read per vault-day when nothing happened, an evaluation
// that failed is done again by the next tick, and a vault that went quiet
// is still finished. An evaluation reads what changed (evaluateDay). See
// README "Alerts" for why not a timer of its own.
type Engine struct {
	Querier *query.Querier
	Store   *Store
	Sinks   []Sink
	Tuning  *Tuning
	Log     *slog.Logger
	// PageURL is the web page's address for alerts' links ("" for none).
	PageURL string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Lease: a claim older than this is taken over (default 5 minutes,
	// well past one invocation's attempts).
	Lease time.Duration
	// InvocationDelays are the waits between the attempts made in the
	// invocation that found an alert (default 1, 2, 4 s: four attempts
	// within ten seconds); LaterDelays the waits before each later
	// attempt, made by CatchUp ticks (default 1, 5, 30 minutes, 2 and 5
	// hours). Attempts stop at Tuning's delivery.attempts.
	InvocationDelays []time.Duration
	LaterDelays      []time.Duration

	once  sync.Once
	owner string
	sem   chan struct{}
}

// Report says what one call did.
type Report struct {
	Evaluated   int // vault-days whose detections were read
	Unchanged   int // vault-days skipped: nothing indexed since the last evaluation
	Alerts      int // findings claimed by this call: new alerts
	Suppressed  int // findings an allow-list or a threshold kept quiet
	Delivered   int // alerts every sink took during this call
	Retrying    int // alerts left for a later attempt
	Undelivered int // alerts given up on during this call
	Errors      []string
}

func (r *Report) add(o Report) {
	r.Evaluated += o.Evaluated
	r.Unchanged += o.Unchanged
	r.Alerts += o.Alerts
	r.Suppressed += o.Suppressed
	r.Delivered += o.Delivered
	r.Retrying += o.Retrying
	r.Undelivered += o.Undelivered
	r.Errors = append(r.Errors, o.Errors...)
}

// Summary is one line for an invocation's Logs.
func (r Report) Summary() string {
	s := fmt.Sprintf("kvaudit alerts: %d vault-days evaluated (%d unchanged), %d new alerts, %d delivered, %d retrying, %d undelivered",
		r.Evaluated, r.Unchanged, r.Alerts, r.Delivered, r.Retrying, r.Undelivered)
	if r.Suppressed > 0 {
		s += fmt.Sprintf(", %d allow-listed or under threshold", r.Suppressed)
	}
	if len(r.Errors) > 0 {
		s += fmt.Sprintf("; %d errors, retried by the next CatchUp tick", len(r.Errors))
	}
	return s
}

func (e *Engine) init() {
	e.once.Do(func() {
		var b [8]byte
		_, _ = rand.Read(b[:])
		e.owner = hex.EncodeToString(b[:])
		e.sem = make(chan struct{}, 4)
	})
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.Default()
	}
	return e.Log
}

func (e *Engine) lease() time.Duration {
	if e.Lease <= 0 {
		return 5 * time.Minute
	}
	return e.Lease
}

func (e *Engine) invocationDelays() []time.Duration {
	if e.InvocationDelays == nil {
		return []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	}
	return e.InvocationDelays
}

func (e *Engine) laterDelay(n int) time.Duration {
	d := e.LaterDelays
	if d == nil {
		d = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour}
	}
	if n >= len(d) {
		n = len(d) - 1
	}
	if n < 0 {
		n = 0
	}
	return d[n]
}

// SinkNames lists the configured sinks.
func (e *Engine) SinkNames() []string {
	var out []string
	for _, s := range e.Sinks {
		out = append(out, s.Name())
	}
	return out
}

// VaultDay is one vault's UTC day.
type VaultDay struct {
	Vault string
	Day   time.Time
}

func utcDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// blobDays are the vault-days a blob's records can lie in and be counted
// beside it: its hour, index.BlobHourMargin either side, not past now.
func blobDays(name string, now time.Time) []VaultDay {
	bp, ok := parse.ParseBlobPath(name)
	if !ok {
		return nil
	}
	first := utcDay(bp.Hour.Add(-index.BlobHourMargin))
	last := bp.Hour.Add(time.Hour + index.BlobHourMargin)
	if last.After(now) {
		last = now
	}
	var out []VaultDay
	for d := first; !d.After(last); d = d.Add(24 * time.Hour) {
		out = append(out, VaultDay{Vault: bp.Vault, Day: d})
	}
	return out
}

// AfterBlob evaluates the vault-days of a blob that an invocation just
// indexed records of, and delivers what is new. Its errors are in the
// Report: the index is not at fault, and the next CatchUp tick evaluates
// again what this call could not finish.
func (e *Engine) AfterBlob(ctx context.Context, blob string) Report {
	return e.Evaluate(ctx, blobDays(blob, e.now()))
}

// Sweep is the CatchUp tick's: every known vault's days of the last
// hours (and index.BlobHourMargin more), the vault-days of the blobs the
// tick indexed, then the alerts due for another attempt.
func (e *Engine) Sweep(ctx context.Context, hours int, blobs []string) Report {
	var rep Report
	now := e.now()
	vaults, err := e.Querier.Vaults(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, "list vaults: "+err.Error())
	}
	seen := map[VaultDay]bool{}
	var pairs []VaultDay
	addPair := func(p VaultDay) {
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	first := utcDay(now.Add(-time.Duration(hours)*time.Hour - index.BlobHourMargin))
	for _, v := range vaults {
		for d := first; !d.After(now); d = d.Add(24 * time.Hour) {
			addPair(VaultDay{Vault: v, Day: d})
		}
	}
	for _, b := range blobs {
		for _, p := range blobDays(b, now) {
			addPair(p)
		}
	}
	rep.add(e.Evaluate(ctx, pairs))
	rep.add(e.Retry(ctx))
	return rep
}

// Evaluate evaluates each vault-day that changed since its last
// evaluation and delivers the new findings; it returns when their first
// attempts (in this invocation) are done.
func (e *Engine) Evaluate(ctx context.Context, pairs []VaultDay) Report {
	e.init()
	var (
		mu  sync.Mutex
		rep Report
		wg  sync.WaitGroup
	)
	deliver := func(r *Record, a *Alert) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := e.deliver(ctx, r, a, true)
			mu.Lock()
			rep.add(o)
			mu.Unlock()
		}()
	}
	sort.Slice(pairs, func(i, j int) bool {
		if !pairs[i].Day.Equal(pairs[j].Day) {
			return pairs[i].Day.After(pairs[j].Day) // today first
		}
		return pairs[i].Vault < pairs[j].Vault
	})
	for _, p := range pairs {
		if ctx.Err() != nil {
			break
		}
		o := e.evaluateDay(ctx, p, deliver)
		mu.Lock()
		rep.add(o)
		mu.Unlock()
	}
	wg.Wait()
	return rep
}

// dayHours are the vault-day's request totals by hour (hour 0 first)
// and their sum, from the per-hour counts: one read.
func (e *Engine) dayHours(ctx context.Context, p VaultDay) ([]int64, int64, error) {
	st, err := e.Querier.Stats(ctx, &query.StatsQuery{
		Selector: query.Selector{Vault: p.Vault},
		Window:   query.Window{From: p.Day, To: p.Day.Add(24 * time.Hour)},
		By:       query.ByHour, Limit: 24,
	})
	if err != nil {
		return nil, 0, err
	}
	hours := make([]int64, 24)
	for _, g := range st.Groups {
		t, err := time.Parse(time.RFC3339, g.Key)
		if err != nil || !utcDay(t).Equal(p.Day) {
			return nil, 0, fmt.Errorf("counts answered hour %q outside the day", g.Key)
		}
		hours[t.Hour()] += g.Count
	}
	return hours, st.Total, nil
}

// changedHours are the hours of day whose totals differ between prev and
// cur, as windows of consecutive hours (non-nil, empty when none).
func changedHours(day time.Time, prev, cur []int64) []query.Window {
	out := []query.Window{}
	for h := 0; h < 24; h++ {
		if prev[h] == cur[h] {
			continue
		}
		from := day.Add(time.Duration(h) * time.Hour)
		if n := len(out); n > 0 && out[n-1].To.Equal(from) {
			out[n-1].To = from.Add(time.Hour)
			continue
		}
		out = append(out, query.Window{From: from, To: from.Add(time.Hour)})
	}
	return out
}

// detectionsQuery is the vault-day's query under the tuning: the kinds
// that alert, over the whole day.
func (e *Engine) detectionsQuery(p VaultDay) *query.DetectionsQuery {
	dq := &query.DetectionsQuery{
		Vault:  p.Vault,
		Window: query.Window{From: p.Day, To: p.Day.Add(24 * time.Hour)},
		SlowMs: query.DefaultSlowMs,
		Kinds:  e.Tuning.Enabled(),
	}
	if dq.Kinds == nil {
		dq.Kinds = []string{} // none: nil would be every kind
	}
	dq.Threshold = int(e.Tuning.Kind(query.KindMassRetrieval).Threshold)
	if k := e.Tuning.Kind(query.KindSlowRequests); k.SlowMs > 0 {
		dq.SlowMs = k.SlowMs
	}
	dq.Anomaly = e.Tuning.Kind(query.KindAccessAnomaly).Anomaly
	return dq
}

// evaluateDay evaluates one vault-day, if it changed since its last
// complete evaluation, and hands each new alert to deliver.
//
// What it reads is proportional to what is new. The event-scanned kinds
// (query.EventKinds) read only the hours whose totals changed since the
// last complete evaluation under the same tuning (the whole day when
// there is none): records arrive late into earlier hours (HAZARDS 4), and
// a late record changes its own hour's total, so its hour is read again.
// A finding's id is per day, so a finding those hours show that was
// alerted already needs nothing more; one that was not is judged on them
// alone, or, when its kind's threshold or allow-list needs the day's
// count (wholeDay), on the whole day of its kind. Mass retrieval skips
// the callers alerted already; it and the anomaly read the counts.
func (e *Engine) evaluateDay(ctx context.Context, p VaultDay, deliver func(*Record, *Alert)) (rep Report) {
	fail := func(what string, err error) Report {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s %s: %s: %v", p.Vault, p.Day.Format(time.DateOnly), what, err))
		e.log().Error("alerts: evaluation failed; the next CatchUp tick tries again",
			slog.String("vault", p.Vault), slog.String("day", p.Day.Format(time.DateOnly)), slog.String("step", what), slog.String("error", err.Error()))
		return rep
	}
	hours, total, err := e.dayHours(ctx, p)
	if err != nil {
		return fail("read counts", err)
	}
	if total == 0 {
		return rep
	}
	prev, err := e.Store.Evaluated(ctx, p.Vault, p.Day)
	if err != nil {
		return fail("read state", err)
	}
	tuning := e.Tuning.Hash()
	if prev != nil && prev.Tuning == tuning {
		// A row without hours (an earlier kvaudit's) says its total only.
		if prev.Hours != nil && slices.Equal(prev.Hours, hours) || prev.Hours == nil && prev.Total == total {
			rep.Unchanged++
			return rep
		}
	}
	rep.Evaluated++
	existing, err := e.Store.Existing(ctx, p.Day)
	if err != nil {
		return fail("read alerts", err)
	}
	day := p.Day.Format(time.DateOnly)
	alerted := func(f *query.Finding) bool {
		subject, window := subjectOf(f, day)
		return existing[FindingID(f.Kind, p.Vault, subject, window)]
	}
	dq := e.detectionsQuery(p)
	dq.Skip = alerted
	if prev != nil && prev.Tuning == tuning && prev.Hours != nil {
		dq.EventWindows = changedHours(p.Day, prev.Hours, hours)
	}
	d, err := e.Querier.Detections(ctx, dq)
	if err != nil {
		return fail("detections", err)
	}
	now := e.now()
	var whole []string // event-scanned kinds to judge on the whole day
	for _, f := range d.Findings {
		k := e.Tuning.Kind(f.Kind)
		if dq.EventWindows != nil && slices.Contains(query.EventKinds, f.Kind) && !alerted(&f) && wholeDay(&f, k) {
			if !slices.Contains(whole, f.Kind) {
				whole = append(whole, f.Kind)
			}
			continue
		}
		if step, err := e.consider(ctx, p, f, k, existing, now, &rep, deliver); err != nil {
			return fail(step, err)
		}
	}
	if len(whole) > 0 {
		dq := e.detectionsQuery(p)
		dq.Kinds = whole
		d, err := e.Querier.Detections(ctx, dq)
		if err != nil {
			return fail("detections", err)
		}
		for _, f := range d.Findings {
			if step, err := e.consider(ctx, p, f, e.Tuning.Kind(f.Kind), existing, now, &rep, deliver); err != nil {
				return fail(step, err)
			}
		}
	}
	if err := e.Store.SetEvaluated(ctx, p.Vault, p.Day, Evaluation{Total: total, Hours: hours, Tuning: tuning}, now); err != nil {
		return fail("record evaluation", err)
	}
	return rep
}

// consider alerts finding f of kind k unless it is alerted already (in
// existing, or claimed meanwhile by another invocation) or kept quiet by
// the tuning; a new alert is handed to deliver. On error it says which
// step failed; the evaluation is then not recorded, and done again.
func (e *Engine) consider(ctx context.Context, p VaultDay, f query.Finding, k Kind, existing map[string]bool, now time.Time, rep *Report, deliver func(*Record, *Alert)) (string, error) {
	if !k.Enabled {
		return "", nil
	}
	a := newAlert(f, p.Vault, p.Day.Format(time.DateOnly), k.Severity, e.PageURL, now)
	if existing[a.ID] {
		return "", nil
	}
	quiet, err := e.suppressed(ctx, &f, p, a.Window, k)
	if err != nil {
		return "allow-list", err
	}
	if quiet {
		rep.Suppressed++
		return "", nil
	}
	r, won, err := e.Store.Claim(ctx, a, e.SinkNames(), e.owner, now)
	if err != nil {
		return "claim", err
	}
	if !won {
		return "", nil // another invocation found it first
	}
	rep.Alerts++
	e.log().Info("alert", slog.String("id", a.ID), slog.String("kind", a.Kind), slog.String("vault", a.Vault),
		slog.String("window", a.Window), slog.String("severity", a.Severity), slog.Int64("count", f.Count))
	if len(e.Sinks) > 0 {
		deliver(r, a)
	}
	return "", nil
}

// wholeDay reports whether a finding of an event-scanned kind that the
// changed hours show, and that is not alerted yet, must be judged on the
// whole day rather than on those hours: when its kind has a threshold
// (the hours' count may stay under it where the day's passes it), or
// when an allow-list entry other than its own caller applies to it
// (suppressed counts the caller's events of the whole day by that entry
// against the finding's count). Otherwise the hours decide alone, and
// their finding is the day's: the other hours were judged by an earlier
// complete evaluation under the same tuning, which would have claimed
// the finding had they held any of its events (a count above 0 alerts,
// and an entry naming the caller quiets it whatever its count).
func wholeDay(f *query.Finding, k Kind) bool {
	if k.Threshold > 0 {
		return true
	}
	if f.Caller == "" || f.Caller == "-" {
		return false
	}
	for _, entry := range k.Allow {
		if strings.ToLower(strings.TrimSpace(entry.ID)) == f.Caller {
			continue
		}
		if _, ok := kindFilter(f, nil); ok {
			return true
		}
	}
	return false
}

// kindFilter is what query counts toward a kind's findings, for
// re-counting a finding's events of an allow-listed caller; ok false
// when the stats cannot say (TLS versions and durations are not in them).
func kindFilter(f *query.Finding, ops []string) (query.Filter, bool) {
	switch f.Kind {
	case query.KindMassRetrieval:
		return query.Filter{Operations: ops, Statuses: []query.StatusMatch{{Lo: 200, Hi: 299}}}, true
	case query.KindSensitiveOperation:
		return query.Filter{Operations: ops, Statuses: []query.StatusMatch{{Lo: 200, Hi: 299}}}, true
	case query.KindRefusedAccess:
		return query.Filter{Operations: ops, Statuses: []query.StatusMatch{{Lo: 401, Hi: 401}, {Lo: 403, Hi: 403}}}, true
	case query.KindAccessAnomaly:
		return query.Filter{Operations: ops}, f.Caller != ""
	}
	return query.Filter{}, false
}

// findingOps are the operations a finding's events can be: what an
// allow entry restricted to operations must cover.
func findingOps(f *query.Finding) []string {
	switch {
	case f.Kind == query.KindMassRetrieval:
		return []string{"KeyGet", "SecretGet", "VaultGet"}
	case f.Operation != "":
		return []string{f.Operation}
	}
	return nil // any operation
}

// suppressed reports whether the finding stays quiet: its count is not
// above the kind's threshold once the events of allow-listed callers are
// taken out. An entry naming the finding's own caller key covers its
// events of the entry's operations (from the finding's per-operation
// counts); any other entry (an app id or UPN that the caller key is not)
// is looked up in the index: its events of the finding's window, vault,
// IP, object, operations and outcomes, counted under the finding's
// caller. Entries are not added up (one event can match several), so an
// overlap errs toward alerting.
func (e *Engine) suppressed(ctx context.Context, f *query.Finding, p VaultDay, window string, k Kind) (bool, error) {
	if f.Count <= k.Threshold {
		return true, nil
	}
	if f.Caller == "" || f.Caller == "-" {
		return false, nil
	}
	var allowed int64
	for _, entry := range k.Allow {
		id := strings.ToLower(strings.TrimSpace(entry.ID))
		ops := findingOps(f)
		var covered []string
		for _, op := range ops {
			if entry.covers(op) {
				covered = append(covered, op)
			}
		}
		restricted := len(entry.Operations) > 0
		if restricted && ops != nil && len(covered) == 0 {
			continue
		}
		if id == f.Caller {
			switch {
			case !restricted:
				allowed = max(allowed, f.Count)
			case f.Kind == query.KindMassRetrieval:
				var n int64
				for _, g := range f.Operations {
					if entry.covers(g.Key) {
						n += g.Count
					}
				}
				allowed = max(allowed, n)
			case ops != nil:
				allowed = max(allowed, f.Count) // its one operation is covered
			}
			continue
		}
		switch {
		case !restricted:
			covered = ops
		case ops == nil:
			covered = entry.Operations
		}
		filter, ok := kindFilter(f, covered)
		if !ok {
			continue
		}
		w := query.Window{From: p.Day, To: p.Day.Add(24 * time.Hour)}
		if len(window) == len("2006-01-02T15") {
			if t, err := time.Parse("2006-01-02T15", window); err == nil {
				w = query.Window{From: t, To: t.Add(time.Hour)}
			}
		}
		sel := query.Selector{Caller: id, Vault: p.Vault}
		if f.Kind == query.KindSensitiveOperation || f.Kind == query.KindRefusedAccess {
			sel.IP = f.IP
		}
		if f.Kind == query.KindSensitiveOperation {
			sel.Object = f.Object
		}
		st, err := e.Querier.Stats(ctx, &query.StatsQuery{Selector: sel, Window: w, Filter: filter, By: query.ByCaller, Limit: 10000})
		if err != nil {
			return false, err
		}
		for _, g := range st.Groups {
			if g.Key == f.Caller {
				allowed = max(allowed, g.Count)
			}
		}
	}
	return f.Count-allowed <= k.Threshold, nil
}

// deliver makes the attempts an alert is due for now: with invocation,
// the first ones (at once, then InvocationDelays apart), else one. It
// records the outcome with If-Match, and stops if another invocation
// took the alert over meanwhile.
func (e *Engine) deliver(ctx context.Context, r *Record, a *Alert, invocation bool) (rep Report) {
	e.init()
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	case <-ctx.Done():
		return rep
	}
	states := r.SinkStates()
	maxAttempts := e.Tuning.Delivery.Attempts
	delays := e.invocationDelays()
	for round := 0; ; round++ {
		var pending []Sink
		for _, s := range e.Sinks {
			if st := states[s.Name()]; st != nil && (st.State == sinkPending || st.State == sinkRetrying) {
				pending = append(pending, s)
			}
		}
		// A sink the alert was claimed for and that is gone now.
		for name, st := range states {
			if (st.State == sinkPending || st.State == sinkRetrying) && !e.hasSink(name) {
				st.State, st.Error = sinkUndelivered, "sink no longer configured"
			}
		}
		if len(pending) == 0 {
			break
		}
		var wg sync.WaitGroup
		now := e.now()
		for _, s := range pending {
			st := states[s.Name()]
			wg.Add(1)
			go func() {
				defer wg.Done()
				actx, cancel := context.WithTimeout(ctx, e.Tuning.Timeout())
				err := s.Send(actx, a, now)
				cancel()
				st.Attempts++
				st.Last = now.Format(time.RFC3339)
				var se *SendError
				switch {
				case err == nil:
					st.State, st.Error = sinkDelivered, ""
				case errors.As(err, &se) && se.Permanent:
					st.State, st.Error = sinkUndelivered, se.Reason
				case st.Attempts >= maxAttempts:
					st.State, st.Error = sinkUndelivered, err.Error()
				default:
					st.State, st.Error = sinkRetrying, err.Error()
				}
				if st.State == sinkUndelivered {
					e.log().Error("alert undelivered", slog.String("id", a.ID), slog.String("kind", a.Kind), slog.String("vault", a.Vault),
						slog.String("window", a.Window), slog.String("sink", s.Name()), slog.Int("attempts", st.Attempts), slog.String("reason", st.Error))
				} else if st.State == sinkRetrying {
					e.log().Warn("alert not delivered yet", slog.String("id", a.ID), slog.String("sink", s.Name()),
						slog.Int("attempts", st.Attempts), slog.String("reason", st.Error))
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return rep // the claim's lease lets the next tick go on
		}
		retrying := false
		for _, st := range states {
			retrying = retrying || st.State == sinkRetrying
		}
		if !retrying || !invocation || round >= len(delays) {
			break
		}
		// Save the round, then wait in the invocation.
		e.settle(r, states, now)
		if err := e.Store.Save(ctx, r, now); err != nil {
			return e.lost(rep, r, err)
		}
		t := time.NewTimer(delays[round])
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return rep
		}
	}
	now := e.now()
	e.settle(r, states, now)
	if err := e.Store.Save(ctx, r, now); err != nil {
		return e.lost(rep, r, err)
	}
	switch r.State {
	case StateDelivered:
		rep.Delivered++
	case StateRetrying:
		rep.Retrying++
	case StateUndelivered:
		rep.Undelivered++
	}
	return rep
}

func (e *Engine) lost(rep Report, r *Record, err error) Report {
	if errors.Is(err, ErrLost) {
		e.log().Info("alert taken over by another invocation", slog.String("id", r.RowKey))
		return rep
	}
	rep.Errors = append(rep.Errors, "record delivery of "+r.RowKey+": "+err.Error())
	e.log().Error("alerts: cannot record a delivery; the claim's lease lets a later tick go on", slog.String("id", r.RowKey), slog.String("error", err.Error()))
	return rep
}

func (e *Engine) hasSink(name string) bool {
	for _, s := range e.Sinks {
		if s.Name() == name {
			return true
		}
	}
	return false
}

// settle sets the row's overall state from its sinks'.
func (e *Engine) settle(r *Record, states map[string]*SinkState, now time.Time) {
	r.setSinks(states)
	r.State, r.NextAt = StateDelivered, ""
	minAttempts := 0
	for _, st := range states {
		switch st.State {
		case sinkRetrying:
			r.State = StateRetrying
			if minAttempts == 0 || st.Attempts < minAttempts {
				minAttempts = st.Attempts
			}
		case sinkUndelivered, sinkPending:
			if r.State != StateRetrying {
				r.State = StateUndelivered
			}
		}
	}
	if r.State == StateRetrying {
		n := minAttempts - len(e.invocationDelays()) - 1
		r.NextAt = now.Add(e.laterDelay(n)).Format(time.RFC3339Nano)
		r.Owner, r.ClaimedAt = "", ""
	}
	if r.State == StateDelivered || r.State == StateUndelivered {
		r.Owner, r.ClaimedAt = "", ""
	}
}

// Retry makes the attempts that are due: alerts retrying whose next
// attempt has come, and alerts claimed by an invocation that died (its
// claim older than the lease). Each is taken over with If-Match first, so
// two ticks never send the same attempt.
func (e *Engine) Retry(ctx context.Context) Report {
	e.init()
	var rep Report
	now := e.now()
	due, err := e.Store.Due(ctx, utcDay(now).Add(-3*24*time.Hour), utcDay(now), now, e.lease())
	if err != nil {
		rep.Errors = append(rep.Errors, "list alerts due: "+err.Error())
		return rep
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, r := range due {
		a, err := r.Alert()
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			continue
		}
		r.State, r.Owner, r.ClaimedAt = StateClaimed, e.owner, now.Format(time.RFC3339Nano)
		if err := e.Store.Save(ctx, r, now); err != nil {
			rep = e.lost(rep, r, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := e.deliver(ctx, r, a, false)
			mu.Lock()
			rep.add(o)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return rep
}

// Retain deletes alert state of days before cutoff (the index's
// retention).
func (e *Engine) Retain(ctx context.Context, cutoff time.Time) (int, error) {
	return e.Store.Retain(ctx, cutoff)
}
