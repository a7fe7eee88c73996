package query

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Detection kinds: the questions security teams ask of Key Vault logs
// every day (Microsoft Sentinel's Key Vault rules, Microsoft's sample
// queries).
const (
	// KindMassRetrieval: a caller with more than Threshold successful
	// SecretGet, KeyGet or VaultGet in one UTC day.
	KindMassRetrieval = "massSecretRetrieval"
	// KindSensitiveOperation: successful deletes, purges and backups.
	KindSensitiveOperation = "sensitiveOperation"
	// KindRefusedAccess: 401 and 403 answers, by caller and IP, without
	// the 401 challenge every client gets before it authenticates
	// (operationName Authentication with 401).
	KindRefusedAccess = "refusedAccess"
	// KindOldTLS: requests made with a TLS version below 1.2.
	KindOldTLS = "oldTls"
	// KindSlowRequests: requests that took more than SlowMs, by operation
	// and vault.
	KindSlowRequests = "slowRequests"
	// KindAccessAnomaly: a day or hour far above its own baseline, per
	// vault and per caller, from the per-hour counts (anomaly.go).
	KindAccessAnomaly = "accessAnomaly"
)

// Kinds lists the detection kinds in the order findings are answered.
var Kinds = []string{KindMassRetrieval, KindSensitiveOperation, KindRefusedAccess, KindOldTLS, KindSlowRequests, KindAccessAnomaly}

// EventKinds are the kinds read from the Events rows of their window
// (DetectionsQuery.EventWindows), not from the counts and postings.
var EventKinds = []string{KindSensitiveOperation, KindRefusedAccess, KindOldTLS, KindSlowRequests}

var (
	massRetrievalOps = []string{"SecretGet", "KeyGet", "VaultGet"}
	sensitiveOps     = []string{"VaultDelete", "KeyDelete", "SecretDelete", "SecretPurge", "KeyPurge", "SecretBackup", "KeyBackup"}
)

// Bounds of a detections answer.
const (
	maxFindingsPerKind = 1000
	maxListEntries     = 20 // entries of a finding's lists (vaults, IPs …)
	maxVaults          = 10000
)

// MaxDetectionVaultDays bounds what one detections request may cost: the
// vaults it looks at times the UTC days its window touches. Each such
// vault-day is one server-side filtered read of an Events partition, in
// which the service reads every row: at least one storage request, and
// one more each time the service stops at 1,000 matching rows or 5 s of
// its time ("Query timeout and pagination", Azure Table service REST
// reference); each vault also costs a read of its counts (of the window,
// and of the 14 days before for access anomalies). The vaults are those
// ingest's registry holds, data in the window or not. 1,000 is 31 vaults over a 31-day
// window, or 500 vaults over the last 24 hours; past it the request is
// refused with a *ParamError before anything is read.
const MaxDetectionVaultDays = 1000

// Finding is one detection. Which fields are set depends on Kind; Count,
// First and Last always are. Lists hold the most frequent entries, at most
// 20.
type Finding struct {
	Kind          string  `json:"kind"`
	Caller        string  `json:"caller,omitempty"` // objectId, else upn, else appId (lower-cased), else "-"
	IP            string  `json:"ip,omitempty"`
	Vault         string  `json:"vault,omitempty"`
	Operation     string  `json:"operation,omitempty"`
	Object        string  `json:"object,omitempty"`
	Day           string  `json:"day,omitempty"`
	TLSVersion    string  `json:"tlsVersion,omitempty"`
	Count         int64   `json:"count"`
	First         string  `json:"first"`
	Last          string  `json:"last"`
	MaxDurationMs float64 `json:"maxDurationMs,omitempty"`
	AvgDurationMs float64 `json:"avgDurationMs,omitempty"`
	Vaults        []Group `json:"vaults,omitempty"`
	Objects       []Group `json:"objects,omitempty"`
	IPs           []Group `json:"ips,omitempty"`
	ClientInfos   []Group `json:"clientInfos,omitempty"`
	Operations    []Group `json:"operations,omitempty"`
	Statuses      []Group `json:"statuses,omitempty"`
	// Partial says Count is a lower bound: the caller's postings of that
	// day hold more entries than one request reads (mass retrieval).
	Partial bool `json:"partial,omitempty"`
	// ListsApproximate says a list above met more distinct values than
	// it counts exactly (1000): its entries are then the most frequent,
	// each count over by at most what the least frequent one had.
	ListsApproximate bool `json:"listsApproximate,omitempty"`
	// Anomaly is set on accessAnomaly findings (anomaly.go).
	Anomaly *AnomalyDetail `json:"anomaly,omitempty"`
}

// Detections is the answer of a detections query.
type Detections struct {
	From      string  `json:"from"`
	To        string  `json:"to"`
	Vault     string  `json:"vault,omitempty"`
	Threshold int     `json:"threshold"`
	SlowMs    float64 `json:"slowMs"`
	// Vaults lists the vaults looked at.
	Vaults []string `json:"vaults"`
	// Summary counts the findings of each kind (every kind present).
	Summary map[string]int `json:"summary"`
	// Findings, by kind in Kinds order, then by descending count.
	Findings []Finding `json:"findings"`
	// Truncated is set when a kind had more than 1000 findings; the most
	// frequent are kept.
	Truncated bool `json:"truncated,omitempty"`
}

// Detections answers dq. How it reads the index:
//
//   - The vaults: dq.Vault, or every vault in ingest's registry of the
//     vaults it has indexed (one request).
//   - Mass retrieval: the per-hour caller counts bound each caller's daily
//     total; only callers whose total passes the threshold (and that
//     dq.Skip keeps) are read, from their postings of that day (no event
//     read), kept to successful SecretGet, KeyGet and VaultGet.
//   - The other kinds are not in the counts (no TLS version or duration
//     there): each vault's Events partitions of the window (of
//     dq.EventWindows when given) are read with one server-side filter
//     that keeps only rows of the selected kinds, so only findings cross
//     the network, but the service reads every row of the RowKey range.
//     Keep windows short on busy vaults; MaxScanRows bounds the rows
//     returned.
//   - The access anomaly: the per-hour counts of the window and the 14
//     days before it (anomaly.go).
//
// Only the kinds dq.Kinds selects are computed, and read for.
func (q *Querier) Detections(ctx context.Context, dq *DetectionsQuery) (*Detections, error) {
	want, err := dq.selected()
	if err != nil {
		return nil, err
	}
	d := &Detections{
		From: formatInstant(dq.From), To: formatInstant(dq.To), Vault: dq.Vault,
		Threshold: dq.Threshold, SlowMs: dq.SlowMs,
		Summary: map[string]int{}, Findings: []Finding{}, Vaults: []string{},
	}
	vaultKeys := []string{index.EncodeKeyPart(dq.Vault)}
	if dq.Vault == "" {
		var err error
		if vaultKeys, err = q.listVaults(ctx); err != nil {
			return nil, err
		}
	}
	if err := checkVaultDays(len(vaultKeys), len(days(dq.Window)), dq.Vault != ""); err != nil {
		return nil, err
	}
	vaults := map[string]bool{}
	if dq.Vault != "" {
		vaults[dq.Vault] = true
	}
	callerDays := map[[2]string]int64{} // caller key, day → upper bound of its requests
	// vault, day → successful requests of callers that an hour's counts
	// could not name (index.MaxKeysPerDim distinct callers): a caller
	// must not escape the detection by hiding among others.
	unnamed := map[[2]string]int64{}
	// The counts name the vaults seen when none is given, and bound each
	// caller's gets for mass retrieval: without either, nothing to read.
	if want[KindMassRetrieval] || dq.Vault == "" {
		dim := ""
		if want[KindMassRetrieval] {
			dim = index.DimCaller
		}
		firstHour := dq.From.Truncate(time.Hour)
		endHour := dq.To.Add(-time.Nanosecond).Truncate(time.Hour).Add(time.Hour)
		perVault := make([]*index.Counts, len(vaultKeys))
		err := q.parallel(ctx, len(vaultKeys), func(ctx context.Context, i int) error {
			c, err := q.readCounts(ctx, vaultKeys[i], firstHour, endHour, dim)
			perVault[i] = c
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, c := range perVault {
			for k, h := range c.Hours {
				if dq.Vault != "" && k.Vault != dq.Vault {
					continue
				}
				vaults[k.Vault] = true
				// Successful requests only: the class the detection counts.
				for caller, n := range h.Dims[index.DimCaller+index.ClassOK] {
					if caller == index.OtherKey {
						unnamed[[2]string{k.Vault, k.Hour[:8]}] += n
						continue
					}
					callerDays[[2]string{caller, k.Hour[:8]}] += n
				}
			}
		}
	}
	for v := range vaults {
		d.Vaults = append(d.Vaults, v)
	}
	sort.Strings(d.Vaults)

	budget := newRowBudget(q.maxScanRows(), "these detections")
	findings := map[string][]Finding{}
	if want[KindMassRetrieval] {
		if err := q.massRetrievals(ctx, dq, d.Vaults, callerDays, unnamed, budget, findings); err != nil {
			return nil, err
		}
	}

	if kindsFilter(want, dq.SlowMs) != "" {
		agg := newEventAggregates(want)
		type job struct {
			vault, day string
			w          Window
		}
		var jobs []job
		for _, w := range dq.eventWindows() {
			for _, day := range days(w) {
				for _, v := range d.Vaults {
					jobs = append(jobs, job{v, day, w})
				}
			}
		}
		err := q.parallel(ctx, len(jobs), func(ctx context.Context, i int) error {
			return q.scanEventKinds(ctx, dq, jobs[i].vault, jobs[i].day, jobs[i].w, agg, budget)
		})
		if err != nil {
			return nil, err
		}
		for kind, fs := range agg.findings() {
			findings[kind] = append(findings[kind], fs...)
		}
	}
	if want[KindAccessAnomaly] {
		if err := q.anomalies(ctx, dq, d.Vaults, findings); err != nil {
			return nil, err
		}
	}
	for _, kind := range Kinds {
		if !want[kind] {
			continue
		}
		fs := findings[kind]
		sort.SliceStable(fs, func(i, j int) bool {
			if fs[i].Count != fs[j].Count {
				return fs[i].Count > fs[j].Count
			}
			return fs[i].Last > fs[j].Last
		})
		d.Summary[kind] = len(fs)
		if len(fs) > maxFindingsPerKind {
			fs, d.Truncated = fs[:maxFindingsPerKind], true
		}
		d.Findings = append(d.Findings, fs...)
	}
	return d, nil
}

// selected is the set of kinds dq computes.
func (dq *DetectionsQuery) selected() (map[string]bool, error) {
	want := map[string]bool{}
	if dq.Kinds == nil {
		for _, k := range Kinds {
			want[k] = true
		}
		return want, nil
	}
	for _, k := range dq.Kinds {
		if !slices.Contains(Kinds, k) {
			return nil, &ParamError{Msg: fmt.Sprintf("unknown detection kind %q; kinds are %s", truncate(k, 64), strings.Join(Kinds, ", "))}
		}
		want[k] = true
	}
	return want, nil
}

// eventWindows are the windows the event-scanned kinds read: dq's, or
// its EventWindows cut to it (the empty ones left out).
func (dq *DetectionsQuery) eventWindows() []Window {
	if dq.EventWindows == nil {
		return []Window{dq.Window}
	}
	var out []Window
	for _, w := range dq.EventWindows {
		w = Window{From: maxTime(w.From, dq.From), To: minTime(w.To, dq.To)}
		if w.From.Before(w.To) {
			out = append(out, w)
		}
	}
	return out
}

// massRetrievals adds to findings the callers whose successful gets pass
// the threshold on a day: the candidates the counts bound (and those of
// the days whose counts could not name every caller), each read from its
// postings unless dq.Skip says not to.
func (q *Querier) massRetrievals(ctx context.Context, dq *DetectionsQuery, vaults []string, callerDays, unnamed map[[2]string]int64, budget *rowBudget, findings map[string][]Finding) error {
	var overflow [][2]string
	// Any unnamed request of a vault-day, not only more than the
	// threshold of them: a caller named in some hours' counts and unnamed
	// in others passes the threshold with neither part alone.
	for vd, n := range unnamed {
		if n > 0 {
			overflow = append(overflow, vd)
		}
	}
	var cdMu sync.Mutex
	err := q.parallel(ctx, len(overflow), func(ctx context.Context, i int) error {
		named, err := q.successfulGetters(ctx, dq, overflow[i][0], overflow[i][1], budget)
		cdMu.Lock()
		defer cdMu.Unlock()
		for caller, n := range named {
			callerDays[[2]string{caller, overflow[i][1]}] += n
		}
		return err
	})
	if err != nil {
		return err
	}
	var candidates [][2]string
	for cd, n := range callerDays {
		if n <= int64(dq.Threshold) || cd[0] == "-" {
			continue
		}
		if dq.Skip != nil {
			day, err := time.Parse(index.DayLayout, cd[1])
			if err == nil && dq.Skip(&Finding{Kind: KindMassRetrieval, Caller: cd[0], Day: day.Format(time.DateOnly)}) {
				continue
			}
		}
		candidates = append(candidates, cd)
	}
	sort.Slice(candidates, func(i, j int) bool {
		return candidates[i][0] < candidates[j][0] || candidates[i][0] == candidates[j][0] && candidates[i][1] < candidates[j][1]
	})
	// A candidate's postings of a day are read against a budget of its
	// own (and a larger one for them all), so that one caller whose day
	// holds more entries than a request reads (failed requests, other
	// operations) costs its own finding an events read, not everyone's
	// answer.
	postings := newRowBudget(4*q.maxScanRows(), "these detections")
	var mu sync.Mutex
	return q.parallelN(ctx, len(candidates), postingConcurrency, func(ctx context.Context, i int) error {
		f, err := q.massRetrieval(ctx, dq, vaults, candidates[i][0], candidates[i][1], postings, budget)
		if err != nil || f == nil {
			return err
		}
		mu.Lock()
		findings[KindMassRetrieval] = append(findings[KindMassRetrieval], *f)
		mu.Unlock()
		return nil
	})
}

// checkVaultDays refuses a detections request of vaults × days vault-day
// partitions past MaxDetectionVaultDays, saying what would fit.
func checkVaultDays(vaults, days int, oneVault bool) error {
	n := vaults * days
	if n <= MaxDetectionVaultDays {
		return nil
	}
	// A window of d days touches up to d+1 UTC days. One vault always
	// fits a window of 999 days.
	fit := MaxDetectionVaultDays/vaults - 1
	hint := fmt.Sprintf("a window of at most %d days", fit)
	switch {
	case fit < 1:
		hint = "vault"
	case !oneVault:
		hint = "vault, or " + hint
	}
	return &ParamError{Msg: fmt.Sprintf("these detections would scan %d vaults × %d days = %d vault-day partitions, more than one request may (%d): give %s",
		vaults, days, n, MaxDetectionVaultDays, hint)}
}

// listVaults lists the key parts of every vault ever indexed, from the
// registry ingest keeps (one row per vault's blob path prefix): one
// request, whatever the size of the index.
func (q *Querier) listVaults(ctx context.Context) ([]string, error) {
	prefixes, err := ingest.KnownVaultPrefixes(ctx, q.Tables)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range prefixes {
		bp, ok := parse.ParseBlobPath(strings.TrimSuffix(p, "/"))
		if !ok || seen[bp.Vault] {
			continue
		}
		seen[bp.Vault] = true
		out = append(out, index.EncodeKeyPart(bp.Vault))
	}
	if len(out) > maxVaults {
		return nil, &ParamError{Param: ParamVault, Msg: fmt.Sprintf("the index holds %d vaults, more than one request looks at (%d): give vault", len(out), maxVaults)}
	}
	sort.Strings(out)
	return out, nil
}

// massRetrieval counts the caller's successful gets on day (within the
// window) and returns a finding when they pass the threshold, else nil.
func (q *Querier) massRetrieval(ctx context.Context, dq *DetectionsQuery, vaults []string, caller, day string, postings, events *rowBudget) (*Finding, error) {
	sel := Selector{Caller: caller, Vault: dq.Vault}
	dayStart, err := time.Parse(index.DayLayout, day)
	if err != nil {
		return nil, err
	}
	w := Window{From: maxTime(dq.From, dayStart), To: minTime(dq.To, dayStart.Add(24*time.Hour))}
	if !w.From.Before(w.To) {
		return nil, nil
	}
	p := newPlan(sel, Filter{Operations: massRetrievalOps, Statuses: []StatusMatch{{200, 299}}}, w)
	g := newGrouping()
	var r row
	own := postings.sub(q.maxScanRows(), "these detections")
	err = q.eachEntry(ctx, p, day, own, func(e *index.Entry, rk string) {
		// The partition holds every record naming this id, also as the
		// appId of a user's request; the counts (and so the finding) are
		// by the caller a record is counted under.
		if e.Caller != caller {
			return
		}
		r.fromEntry(e)
		t, _ := index.RowKeyTime(rk)
		g.add(t, &r)
	})
	partial := false
	if err != nil && own.spent() && !postings.spent() {
		// More entries than one caller's read may take: what was counted
		// is a lower bound. Past the threshold already, that is the
		// finding; else the service counts the caller's successful gets
		// from the events, where it filters them.
		err, partial = nil, true
		if g.count <= int64(dq.Threshold) {
			g, partial = newGrouping(), false
			if dq.Vault != "" {
				vaults = []string{dq.Vault}
			}
			for _, v := range vaults {
				err = q.successfulGets(ctx, dq, v, day, events, func(r *row) {
					if index.CapValue(r.callerKey()) == caller {
						t, _ := index.RowKeyTime(r.RowKey)
						g.add(t, r)
					}
				})
				if err != nil {
					break
				}
			}
		}
	}
	if err != nil || g.count <= int64(dq.Threshold) {
		return nil, err
	}
	f := g.finding(KindMassRetrieval)
	f.Caller, f.Day, f.Partial = caller, dayStart.Format(time.DateOnly), partial
	f.Statuses = nil // all 2xx by construction
	return &f, nil
}

// successfulGetters counts, by caller, the successful SecretGet, KeyGet
// and VaultGet of vault on day (within the window), from its Events rows
// (only those cross the network). It is read only for a day whose counts
// could not name every caller.
func (q *Querier) successfulGetters(ctx context.Context, dq *DetectionsQuery, vault, day string, budget *rowBudget) (map[string]int64, error) {
	out := map[string]int64{}
	err := q.successfulGets(ctx, dq, vault, day, budget, func(r *row) {
		if c := r.callerKey(); c != "-" {
			out[index.CapValue(c)]++
		}
	})
	return out, err
}

// successfulGets calls fn with each successful SecretGet, KeyGet and
// VaultGet of vault on day (within the window), read from its Events rows
// with a server-side filter (only those cross the network), decoded.
func (q *Querier) successfulGets(ctx context.Context, dq *DetectionsQuery, vault, day string, budget *rowBudget, fn func(r *row)) error {
	p := newPlan(Selector{Vault: vault}, Filter{Operations: massRetrievalOps, Statuses: []StatusMatch{{200, 299}}}, dq.Window)
	var (
		r row
		d parse.Decoder
	)
	return q.scan(ctx, listing{table: p.table, filter: p.partitionFilter(day, "")}, budget, func(e []byte) error {
		if err := decodeRow(e, &r); err != nil {
			return err
		}
		if err := r.full(&d); err != nil {
			return err
		}
		fn(&r)
		return nil
	})
}

// kindsFilter keeps the rows of at least one event-scanned kind that
// want selects; "" when it selects none.
func kindsFilter(want map[string]bool, slowMs float64) string {
	var ors []string
	if want[KindSensitiveOperation] {
		ops := make([]string, len(sensitiveOps))
		for i, op := range sensitiveOps {
			ops[i] = index.PropOp + " eq " + index.ODataString(op)
		}
		ors = append(ors, "(("+strings.Join(ops, " or ")+") and S ge 200 and S le 299)")
	}
	if want[KindRefusedAccess] {
		ors = append(ors, "((S eq 401 or S eq 403) and not (O eq 'Authentication' and S eq 401))")
	}
	if want[KindOldTLS] {
		ors = append(ors, "L lt "+index.ODataString(index.TLSFilterBound))
	}
	if want[KindSlowRequests] {
		ors = append(ors, "D gt "+odataDouble(slowMs))
	}
	return strings.Join(ors, " or ")
}

// scanEventKinds reads the rows of vault on day within w that are of
// some selected event-scanned kind into agg.
func (q *Querier) scanEventKinds(ctx context.Context, dq *DetectionsQuery, vault, day string, w Window, agg *eventAggregates, budget *rowBudget) error {
	p := newPlan(Selector{Vault: vault}, Filter{}, w)
	l := listing{table: p.table, filter: p.partitionFilter(day, "") + " and (" + kindsFilter(agg.want, dq.SlowMs) + ")"}
	var (
		r row
		d parse.Decoder
	)
	return q.scan(ctx, l, budget, func(e []byte) error {
		if err := decodeRow(e, &r); err != nil {
			return err
		}
		if err := r.full(&d); err != nil {
			return err
		}
		agg.add(&r, dq.SlowMs)
		return nil
	})
}

// eventAggregates groups the rows of the event-scanned kinds; safe for
// concurrent use.
type eventAggregates struct {
	want    map[string]bool // the kinds to group
	mu      sync.Mutex
	buckets map[aggBucket]*boundedGroups
}

// aggBucket is a kind, and for the kinds keyed by caller whether the
// caller is anonymous ("-"): unauthenticated requests, which anyone can
// send from any number of addresses, are counted apart, so they cannot
// crowd out the findings of identified callers.
type aggBucket struct {
	kind      string
	anonymous bool
}

// maxGroupsPerBucket bounds the findings one kind keeps while reading
// (each a grouping of a few hundred bytes): twice what an answer lists.
const maxGroupsPerBucket = 2 * maxFindingsPerKind

func newEventAggregates(want map[string]bool) *eventAggregates {
	return &eventAggregates{want: want, buckets: map[aggBucket]*boundedGroups{}}
}

func (a *eventAggregates) add(r *row, slowMs float64) {
	t, _ := index.RowKeyTime(r.RowKey)
	caller := index.CapValue(r.callerKey())
	ip, obj := index.CapValue(r.CallerIPAddress), index.CapValue(r.ObjectName)
	var keys [][6]string
	if a.want[KindSensitiveOperation] && isSensitive(r.OperationName) && r.Status >= 200 && r.Status <= 299 {
		keys = append(keys, [6]string{KindSensitiveOperation, r.Vault, r.OperationName, caller, ip, obj})
	}
	if a.want[KindRefusedAccess] && (r.Status == 401 || r.Status == 403) && !(r.OperationName == "Authentication" && r.Status == 401) {
		keys = append(keys, [6]string{KindRefusedAccess, caller, ip})
	}
	if a.want[KindOldTLS] && tlsBelow12(r.TLSVersion) {
		keys = append(keys, [6]string{KindOldTLS, r.Vault, index.CapValue(r.TLSVersion), caller, ip})
	}
	if a.want[KindSlowRequests] && r.DurationMs != nil && float64(*r.DurationMs) > slowMs {
		keys = append(keys, [6]string{KindSlowRequests, r.OperationName, r.Vault})
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		b := aggBucket{kind: k[0], anonymous: k[0] != KindSlowRequests && caller == "-"}
		bg := a.buckets[b]
		if bg == nil {
			bg = newBoundedGroups(maxGroupsPerBucket)
			a.buckets[b] = bg
		}
		bg.add(k, t, r)
	}
}

// boundedGroups keeps at most cap groupings by key, by the Space-Saving
// rule (see topK): past cap, a new key takes the place of the least
// counted grouping, starting from its count. Every key with more than
// 1/cap of the rows offered is kept, and a kept count is over by at most
// the count it replaced (approximate then says so). Memory is cap
// groupings, whatever the distinct keys — the (caller, IP) pairs of
// refused requests are the refused people's to choose.
type boundedGroups struct {
	cap         int
	byKey       map[[6]string]*keyedGroup
	h           groupHeap
	approximate bool
}

type keyedGroup struct {
	key [6]string
	g   *grouping
	i   int
}

type groupHeap []*keyedGroup

func (h groupHeap) Len() int           { return len(h) }
func (h groupHeap) Less(i, j int) bool { return h[i].g.count < h[j].g.count }
func (h groupHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].i, h[j].i = i, j }
func (h *groupHeap) Push(x any)        { e := x.(*keyedGroup); e.i = len(*h); *h = append(*h, e) }
func (h *groupHeap) Pop() any          { old := *h; e := old[len(old)-1]; *h = old[:len(old)-1]; return e }

func newBoundedGroups(n int) *boundedGroups {
	return &boundedGroups{cap: n, byKey: map[[6]string]*keyedGroup{}}
}

func (b *boundedGroups) add(k [6]string, t time.Time, r *row) {
	e := b.byKey[k]
	switch {
	case e != nil:
	case len(b.h) < b.cap:
		e = &keyedGroup{key: k, g: newGrouping()}
		b.byKey[k] = e
		heap.Push(&b.h, e)
	default:
		e = b.h[0]
		delete(b.byKey, e.key)
		replaced := e.g.count
		e.key, e.g = k, newGrouping()
		e.g.count = replaced
		b.byKey[k] = e
		b.approximate = true
	}
	e.g.add(t, r)
	heap.Fix(&b.h, e.i)
}

func (a *eventAggregates) findings() map[string][]Finding {
	out := map[string][]Finding{}
	for _, bg := range a.buckets {
		for _, e := range bg.h {
			k, g := e.key, e.g
			f := g.finding(k[0])
			f.ListsApproximate = f.ListsApproximate || bg.approximate
			out[k[0]] = append(out[k[0]], f.withKey(k, g))
		}
	}
	return out
}

// withKey sets the fields of a finding of the event-scanned kinds from its
// key, and drops the lists the key makes redundant.
func (f Finding) withKey(k [6]string, g *grouping) Finding {
	switch k[0] {
	case KindSensitiveOperation:
		f.Vault, f.Operation, f.Caller, f.IP, f.Object = k[1], k[2], k[3], k[4], k[5]
		f.Vaults, f.Operations, f.Objects, f.IPs = nil, nil, nil, nil
	case KindRefusedAccess:
		f.Caller, f.IP = k[1], k[2]
		f.IPs = nil
	case KindOldTLS:
		f.Vault, f.TLSVersion, f.Caller, f.IP = k[1], k[2], k[3], k[4]
		f.Vaults, f.IPs, f.Statuses = nil, nil, nil
	case KindSlowRequests:
		f.Operation, f.Vault = k[1], k[2]
		f.Operations, f.Vaults = nil, nil
		f.MaxDurationMs = g.maxMs
		if g.timed > 0 {
			f.AvgDurationMs = float64(int64(g.sumMs/float64(g.timed)*10+0.5)) / 10
		}
	}
	return f
}

func isSensitive(op string) bool {
	for _, s := range sensitiveOps {
		if op == s {
			return true
		}
	}
	return false
}

// tlsBelow12 reports a TLS (or SSL) version older than TLS 1.2, whichever
// way it is spelled: TLS1_0, TLS1.1, SSL3 …; an unknown or empty value is
// not reported.
func tlsBelow12(v string) bool {
	s := strings.NewReplacer(".", "_", " ", "", "V", "").Replace(strings.ToUpper(v))
	if strings.HasPrefix(s, "SSL") {
		return true
	}
	rest, ok := strings.CutPrefix(s, "TLS")
	if !ok {
		return false
	}
	major, minor, _ := strings.Cut(rest, "_")
	mj, err := strconv.Atoi(major)
	if err != nil {
		return false
	}
	mn, _ := strconv.Atoi(minor)
	return mj < 1 || mj == 1 && mn < 2
}

// grouping accumulates the rows of one finding. Its lists are bounded
// (topK): memory does not grow with what callers chose to log.
type grouping struct {
	count       int64
	first, last time.Time
	vaults      topK
	objects     topK
	ips         topK
	clientInfos topK
	operations  topK
	statuses    topK
	maxMs       float64
	sumMs       float64
	timed       int64
}

func newGrouping() *grouping { return &grouping{} }

func (g *grouping) add(t time.Time, r *row) {
	g.count++
	if g.first.IsZero() || t.Before(g.first) {
		g.first = t
	}
	if t.After(g.last) {
		g.last = t
	}
	// Values from the Events row are whole; those of a posting entry are
	// capped already. Capping both keeps a finding's lists alike either
	// way and each key small.
	g.vaults.add(index.CapValue(r.Vault))
	g.objects.add(index.CapValue(r.ObjectName))
	g.ips.add(index.CapValue(r.CallerIPAddress))
	g.clientInfos.add(index.CapValue(r.ClientInfo))
	g.operations.add(index.CapValue(r.OperationName))
	if r.Status != 0 {
		g.statuses.add(strconv.Itoa(r.Status))
	}
	if r.DurationMs != nil {
		ms := float64(*r.DurationMs)
		g.maxMs = max(g.maxMs, ms)
		g.sumMs += ms
		g.timed++
	}
}

func (g *grouping) finding(kind string) Finding {
	return Finding{
		Kind: kind, Count: g.count,
		First: parse.FormatTime(g.first), Last: parse.FormatTime(g.last),
		Vaults: g.vaults.top(maxListEntries), Objects: g.objects.top(maxListEntries), IPs: g.ips.top(maxListEntries),
		ClientInfos: g.clientInfos.top(maxListEntries), Operations: g.operations.top(maxListEntries), Statuses: g.statuses.top(maxListEntries),
		ListsApproximate: g.vaults.approximate || g.objects.approximate || g.ips.approximate ||
			g.clientInfos.approximate || g.operations.approximate || g.statuses.approximate,
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
