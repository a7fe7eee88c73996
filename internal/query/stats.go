package query

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Group is one group of a stats answer, or one entry of a finding's list.
type Group struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// Stats is the answer of a stats query.
type Stats struct {
	By     string  `json:"by"`
	Groups []Group `json:"groups"` // by descending count, then key
	// Total counts the events in the window that match, not the groups:
	// events without an IP or an object are in Total but in no ip or
	// object group.
	Total int64 `json:"total"`
	// OmittedGroups counts the groups left out past the limit.
	OmittedGroups int    `json:"omittedGroups,omitempty"`
	From          string `json:"from"`
	To            string `json:"to"`
	// Source says how the answer was computed: "counts" from the per-hour
	// aggregates ingest keeps (the vault's rows for partial edge hours
	// included), "scan" from the index rows of the selector.
	Source string `json:"source"`
	// ScannedRows counts the index rows read to count events (the counts
	// rows themselves excluded).
	ScannedRows int64 `json:"scannedRows"`
}

// Stats sources.
const (
	SourceCounts = "counts"
	SourceScan   = "scan"
)

// blobHourMargin is how far from its blob's hour a record may be and still
// be found by stats and detections (index.BlobHourMargin, which ingest
// honours when it decides where a record's counts go).
const blobHourMargin = index.BlobHourMargin

// Stats answers sq. A vault alone, with no filter, or with only operations
// (by operation, hour or day) or only statuses (by status, hour or day), is
// answered from the per-vault-hour counts ingest writes beside each
// checkpoint (O(hours), whatever the traffic), plus the vault's event rows
// of the partial hours when from or to is not on the hour. Every other
// combination cannot be answered from those marginal counts and scans the
// selector's index rows (only the columns it needs), up to MaxScanRows.
func (q *Querier) Stats(ctx context.Context, sq *StatsQuery) (*Stats, error) {
	acc := newTally()
	st := &Stats{By: sq.By, From: formatInstant(sq.From), To: formatInstant(sq.To)}
	var err error
	if countsAnswer(sq) {
		st.Source = SourceCounts
		err = q.statsFromCounts(ctx, sq, acc)
	} else {
		st.Source = SourceScan
		err = q.statsFromRows(ctx, sq.Selector, sq.Filter, sq.Window, sq.By, acc, newRowBudget(q.maxScanRows(), "these stats"))
	}
	if err != nil {
		return nil, err
	}
	st.Total, st.ScannedRows = acc.total, acc.scanned
	st.Groups, st.OmittedGroups = acc.groups(sq.Limit)
	return st, nil
}

// countsAnswer reports whether the marginal counts answer sq exactly.
func countsAnswer(sq *StatsQuery) bool {
	if sq.Selector != (Selector{Vault: sq.Vault}) {
		return false
	}
	ops, sts := len(sq.Operations) > 0, len(sq.Statuses) > 0
	timeBy := sq.By == ByHour || sq.By == ByDay
	switch {
	case !ops && !sts:
		return true
	case ops && !sts:
		return timeBy || sq.By == ByOperation
	case sts && !ops:
		return timeBy || sq.By == ByStatus
	}
	return false
}

// tally accumulates counts per key; safe for concurrent use.
type tally struct {
	mu      sync.Mutex
	counts  map[string]int64
	total   int64
	scanned int64
}

func newTally() *tally { return &tally{counts: map[string]int64{}} }

func (t *tally) merge(counts map[string]int64, total, scanned int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, n := range counts {
		t.counts[k] += n
	}
	t.total += total
	t.scanned += scanned
}

// groups are the counts by descending count, then key, the first limit of
// them, and how many were left out.
func (t *tally) groups(limit int) ([]Group, int) {
	gs := make([]Group, 0, len(t.counts))
	for k, n := range t.counts {
		if n > 0 {
			gs = append(gs, Group{Key: k, Count: n})
		}
	}
	sortGroups(gs)
	if len(gs) > limit {
		return gs[:limit], len(gs) - limit
	}
	return gs, 0
}

func sortGroups(gs []Group) {
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].Count != gs[j].Count {
			return gs[i].Count > gs[j].Count
		}
		return gs[i].Key < gs[j].Key
	})
}

func (q *Querier) statsFromCounts(ctx context.Context, sq *StatsQuery, acc *tally) error {
	w := sq.Window
	firstFull := w.From.Truncate(time.Hour)
	if firstFull.Before(w.From) {
		firstFull = firstFull.Add(time.Hour)
	}
	lastEnd := w.To.Truncate(time.Hour)
	var partial []Window
	if !firstFull.Before(lastEnd) {
		// No whole hour inside: the window is under two hours, read its rows.
		partial = append(partial, w)
	} else {
		if w.From.Before(firstFull) {
			partial = append(partial, Window{From: w.From, To: firstFull})
		}
		if lastEnd.Before(w.To) {
			partial = append(partial, Window{From: lastEnd, To: w.To})
		}
	}
	jobs := len(partial)
	if firstFull.Before(lastEnd) {
		jobs++
	}
	return q.parallel(ctx, jobs, func(ctx context.Context, i int) error {
		if i < len(partial) {
			return q.statsFromRows(ctx, Selector{Vault: sq.Vault}, sq.Filter, partial[i], sq.By, acc, nil)
		}
		dim := countsDim(sq.By)
		switch {
		case len(sq.Operations) > 0:
			dim = index.DimOperation
		case len(sq.Statuses) > 0:
			dim = index.DimStatus
		}
		counts, err := q.readCounts(ctx, index.EncodeKeyPart(sq.Vault), firstFull, lastEnd, dim)
		if err != nil {
			return err
		}
		local := map[string]int64{}
		var total int64
		for k, h := range counts.Hours {
			if k.Vault != sq.Vault {
				continue // a record of another vault in this vault's blob
			}
			total += addHour(local, k.Hour, h, sq)
		}
		acc.merge(local, total, 0)
		return nil
	})
}

// addHour adds one vault-hour's counts to local as sq groups them, and
// returns the events it counts.
func addHour(local map[string]int64, hour string, h *index.HourCounts, sq *StatsQuery) int64 {
	var n int64
	switch {
	case len(sq.Operations) > 0:
		for op, c := range h.Dims[index.DimOperation] {
			if sq.Filter.matchesOperation(op) {
				n += c
				if sq.By == ByOperation {
					local[op] += c
				}
			}
		}
	case len(sq.Statuses) > 0:
		for s, c := range h.Dims[index.DimStatus] {
			code, err := strconv.Atoi(s)
			if err == nil && sq.Filter.matchesStatus(code) {
				n += c
				if sq.By == ByStatus {
					local[s] += c
				}
			}
		}
	default:
		n = h.Total
		if dim := countsDim(sq.By); dim != "" {
			addDim(local, h, dim)
		}
	}
	switch sq.By {
	case ByHour:
		local[hourKey(hour)] += n
	case ByDay:
		local[dayKey(hour)] += n
	}
	return n
}

// addDim adds h's counts of dim, summed over its request classes, to
// local. Keys a class could not keep (index.MaxKeysPerDim and its byte
// bound) are one group per class, index.OtherKeyOf(class).
func addDim(local map[string]int64, h *index.HourCounts, dim string) {
	for _, stored := range index.ClassDims(dim) {
		_, class := index.SplitDim(stored)
		for k, c := range h.Dims[stored] {
			if k == index.OtherKey {
				k = index.OtherKeyOf(class)
			}
			local[k] += c
		}
	}
}

func countsDim(by string) string {
	switch by {
	case ByOperation:
		return index.DimOperation
	case ByStatus:
		return index.DimStatus
	case ByCaller:
		return index.DimCaller
	case ByIP:
		return index.DimIP
	case ByObject:
		return index.DimObject
	}
	return ""
}

// hourKey and dayKey turn a counts Hour (index.HourLayout) into the keys
// stats answer: "2026-11-20T10:00:00Z" and "2026-11-20".
func hourKey(h string) string {
	t, err := time.Parse(index.HourLayout, h)
	if err != nil {
		return h
	}
	return t.Format("2006-01-02T15:04:05Z")
}

func dayKey(h string) string {
	t, err := time.Parse(index.HourLayout, h)
	if err != nil {
		return h
	}
	return t.Format(time.DateOnly)
}

// readCounts sums the counts rows of vault key vk for the record hours in
// [from, to) (both on the hour), from the blob partitions that can hold
// them, with the totals and the counts of dimension dim only (index.Dim…;
// "" for the totals alone, which are then all that is read). The hours are
// read a day at a time, concurrently: each day is its own PartitionKey
// range, which the service serves in parallel, and the Hour filter gives
// every row to exactly one day.
func (q *Querier) readCounts(ctx context.Context, vk string, from, to time.Time, dim string) (*index.Counts, error) {
	var chunks []Window
	for t := from; t.Before(to); t = t.Add(24 * time.Hour) {
		chunks = append(chunks, Window{From: t, To: minTime(t.Add(24*time.Hour), to)})
	}
	parts := make([]*index.Counts, len(chunks))
	err := q.parallel(ctx, len(chunks), func(ctx context.Context, i int) error {
		l := listing{table: index.TableBlobs, filter: countsFilter(vk, chunks[i].From, chunks[i].To)}
		if dim == "" {
			l.sel = selectColumns("Vault", "Hour", "Total")
		}
		// A row's chunks C0… hold its triples sorted by dimension; a chunk
		// without one of dim's (in any request class) is not decoded (an
		// empty array stands in, so that AddRow still reads the chunks
		// after it).
		var markers []string
		for _, stored := range index.ClassDims(dim) {
			markers = append(markers, `"d":`+strconv.Quote(stored))
		}
		parts[i] = &index.Counts{}
		return q.scan(ctx, l, nil, func(e []byte) error {
			var props map[string]any
			if err := json.Unmarshal(e, &props); err != nil {
				return fmt.Errorf("query: unreadable counts row: %w", err)
			}
			// $select returns a property a row lacks as null; AddRow wants it absent.
			for k, v := range props {
				if v == nil {
					delete(props, k)
				}
				if c, ok := v.(string); ok && len(k) > 1 && k[0] == 'C' && k[1] >= '0' && k[1] <= '9' && !containsAny(c, markers) {
					props[k] = "[]"
				}
			}
			return parts[i].AddRow(props)
		})
	})
	if err != nil {
		return nil, err
	}
	// The days hold distinct hours: merging is taking their hours.
	counts := &index.Counts{Hours: map[index.HourKey]*index.HourCounts{}}
	for _, p := range parts {
		for k, h := range p.Hours {
			counts.Hours[k] = h
		}
	}
	return counts, nil
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// countsFilter selects the counts rows (RowKey "a|…", checkpoints are "c|…")
// of record hours [from, to) in the blob partitions vk|hour that can hold
// them: blobs up to blobHourMargin either side.
func countsFilter(vk string, from, to time.Time) string {
	lastHour := to.Add(-time.Hour)
	return "PartitionKey ge " + index.ODataString(vk+"|"+from.Add(-blobHourMargin).UTC().Format(index.HourLayout)) +
		" and PartitionKey le " + index.ODataString(vk+"|"+lastHour.Add(blobHourMargin).UTC().Format(index.HourLayout)) +
		" and RowKey ge 'a|' and RowKey lt 'a}'" + // '}' follows '|'
		" and Hour ge " + index.ODataString(from.UTC().Format(index.HourLayout)) +
		" and Hour lt " + index.ODataString(to.UTC().Format(index.HourLayout))
}

// statsFromRows counts the index rows of sel and f in w, by, into acc. A
// nil budget reads without bound (callers pass nil only for bounded
// windows).
func (q *Querier) statsFromRows(ctx context.Context, sel Selector, f Filter, w Window, by string, acc *tally, budget *rowBudget) error {
	p := newPlan(sel, f, w)
	if p.kind != "" {
		return q.parallelN(ctx, len(p.days), postingConcurrency, func(ctx context.Context, i int) error {
			local := map[string]int64{}
			var (
				r row
				n int64
			)
			err := q.eachEntry(ctx, p, p.days[i], budget, func(e *index.Entry, _ string) {
				n++
				r.fromEntry(e)
				if k := rowKeyOf(&r, by); k != "" {
					local[k]++
				}
			})
			if err != nil {
				return err
			}
			acc.merge(local, n, n)
			return nil
		})
	}
	cols := []string{"RowKey", index.PropLayout}
	whole := false
	switch by {
	case ByOperation:
		cols = append(cols, index.PropOp)
	case ByStatus:
		cols = append(cols, index.PropStat)
	case ByCaller, ByIP, ByObject:
		whole = true // from the record the row holds
	}
	columns := selectColumns(cols...)
	if whole {
		columns = ""
	}
	return q.parallel(ctx, len(p.days), func(ctx context.Context, i int) error {
		local := map[string]int64{}
		var total, scanned int64
		var (
			r row
			d parse.Decoder
		)
		l := listing{table: p.table, filter: p.partitionFilter(p.days[i], ""), sel: columns}
		err := q.scan(ctx, l, budget, func(e []byte) error {
			scanned++
			if err := decodeRow(e, &r); err != nil {
				return err
			}
			if whole {
				if err := r.full(&d); err != nil {
					return err
				}
			}
			total++
			if k := rowKeyOf(&r, by); k != "" {
				local[k]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		acc.merge(local, total, scanned)
		return nil
	})
}

// rowKeyOf is the group of r by dimension by, as the counts would give it;
// "" for no group (no IP, no object).
func rowKeyOf(r *row, by string) string {
	switch by {
	case ByOperation:
		return r.OperationName
	case ByStatus:
		return strconv.Itoa(r.Status)
	// Capped as the counts and the postings cap them (index.CapValue), so
	// that one value is one group whichever of them an answer reads.
	case ByCaller:
		return index.CapValue(r.callerKey())
	case ByIP:
		return index.CapValue(r.CallerIPAddress)
	case ByObject:
		return index.CapValue(strings.ToLower(r.ObjectName))
	case ByHour:
		t, _ := index.RowKeyTime(r.RowKey)
		return t.Truncate(time.Hour).Format("2006-01-02T15:04:05Z")
	case ByDay:
		t, _ := index.RowKeyTime(r.RowKey)
		return t.Format(time.DateOnly)
	}
	return ""
}

func formatInstant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
