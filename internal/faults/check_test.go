package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

// eventRow is what the check reads of an Events row.
type eventRow struct {
	PartitionKey, RowKey string
	CorrelationID        string `json:"CorrelationId"`
	ObjectID             string `json:"ObjectId"`
	Upn                  string
	AppID                string `json:"AppId"`
	CallerIPAddress      string `json:"CallerIpAddress"`
	ObjectName           string
	Vault                string
}

// listRows lists a table's rows with the selected properties.
func (e *env) listRows(ctx context.Context, short, sel string, fn func(raw []byte) error) error {
	var opts *aztables.ListEntitiesOptions
	if sel != "" {
		opts = &aztables.ListEntitiesOptions{Select: to.Ptr(sel)}
	}
	pager := e.tables.Client(short).NewListEntitiesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if strings.Contains(err.Error(), "TableNotFound") {
				return nil
			}
			return fmt.Errorf("list %s: %w", e.tables.Name(short), err)
		}
		for _, raw := range page.Entities {
			if err := fn(raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// events reads the Events table: each row's record (layout 2 keeps it
// compressed in R), decoded as the query API does.
func (e *env) events(ctx context.Context) ([]eventRow, error) {
	var rows []eventRow
	err := e.listRows(ctx, index.TableEvents, "", func(raw []byte) error {
		var keys struct{ PartitionKey, RowKey string }
		if err := json.Unmarshal(raw, &keys); err != nil {
			return err
		}
		var rec parse.Record
		if err := query.DecodeRow(raw, &rec); err != nil {
			return fmt.Errorf("Events row %s/%s: %w", keys.PartitionKey, keys.RowKey, err)
		}
		rows = append(rows, eventRow{PartitionKey: keys.PartitionKey, RowKey: keys.RowKey, CorrelationID: rec.CorrelationID,
			ObjectID: rec.Identity.ObjectID, Upn: rec.Identity.UPN, AppID: rec.Identity.AppID,
			CallerIPAddress: rec.CallerIPAddress, ObjectName: rec.ObjectName, Vault: rec.Vault})
		return nil
	})
	return rows, err
}

// postings reads the Postings table: for each kind, each event's RowKey
// and the number of distinct lookup keys with an entry for it (overlapping
// postings of one key count once, as queries dedupe them).
func (e *env) postings(ctx context.Context) (map[string]map[string]int, error) {
	keys := map[string]map[string]map[string]bool{} // kind → event RowKey → lookup keys
	err := e.listRows(ctx, index.TablePostings, "", func(raw []byte) error {
		var r struct{ PartitionKey string }
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		kind, _, _ := strings.Cut(r.PartitionKey, "|")
		var pr index.PostingRow
		es, err := index.DecodePostingRow(nil, raw, &pr)
		if err != nil {
			return err
		}
		key := pr.Parsed.Key
		if keys[kind] == nil {
			keys[kind] = map[string]map[string]bool{}
		}
		for _, en := range es {
			rk := en.EventRowKey()
			if keys[kind][rk] == nil {
				keys[kind][rk] = map[string]bool{}
			}
			keys[kind][rk][key] = true
		}
		return nil
	})
	out := map[string]map[string]int{}
	for kind, m := range keys {
		out[kind] = map[string]int{}
		for rk, ks := range m {
			out[kind][rk] = len(ks)
		}
	}
	return out, err
}

// emulatorLoss is what Azurite acknowledged before a restart and no longer
// had after it, read before kvaudit could write again: the emulator's loss.
// The zero value is no loss.
type emulatorLoss struct {
	events map[string]bool            // correlation ids of lost Events rows
	rows   map[string]map[string]bool // short table -> RowKeys of lost rows
}

// lost reports whether Azurite lost a row of short with RowKey rk.
func (l emulatorLoss) lost(short, rk string) bool { return l.rows[short][rk] }

// verdict is the exactly-once check's finding. The emulator's losses are
// counted apart and do not fail it.
type verdict struct {
	Written, Distinct, Rows int
	Stats                   int64
	Missing, Doubled        []string // correlation ids, kvaudit's
	Unknown                 int      // rows whose id was never written
	Lookup                  []string // lookup rows missing or extra, kvaudit's
	StatsErr                error
	StatsWant               []int64 // acceptable totals

	EmuMissing int // events Azurite acknowledged, then lost
	EmuLookup  int // lookup rows Azurite acknowledged, then lost (or orphaned by a lost event)
}

func (v verdict) ok() bool {
	if len(v.Missing) > 0 || len(v.Doubled) > 0 || v.Unknown > 0 || len(v.Lookup) > 0 || v.StatsErr != nil {
		return false
	}
	for _, w := range v.StatsWant {
		if v.Stats == w {
			return true
		}
	}
	return false
}

func (v verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "written %d, distinct indexed %d, Events rows %d, stats total %d", v.Written, v.Distinct, v.Rows, v.Stats)
	if v.EmuMissing > 0 || v.EmuLookup > 0 {
		fmt.Fprintf(&b, "; the emulator lost %d acknowledged events and %d lookup rows (lost or orphaned)", v.EmuMissing, v.EmuLookup)
	}
	if len(v.Missing) > 0 {
		fmt.Fprintf(&b, "; %d missing (first %s)", len(v.Missing), strings.Join(first(v.Missing, 3), ","))
	}
	if len(v.Doubled) > 0 {
		fmt.Fprintf(&b, "; %d doubled (first %s)", len(v.Doubled), strings.Join(first(v.Doubled, 3), ","))
	}
	if v.Unknown > 0 {
		fmt.Fprintf(&b, "; %d rows of ids never written", v.Unknown)
	}
	if len(v.Lookup) > 0 {
		fmt.Fprintf(&b, "; lookup rows: %s", strings.Join(v.Lookup, "; "))
	}
	if v.StatsErr != nil {
		fmt.Fprintf(&b, "; stats: %v", v.StatsErr)
	} else if !slices.Contains(v.StatsWant, v.Stats) {
		fmt.Fprintf(&b, "; stats total %d, want %v", v.Stats, v.StatsWant)
	}
	return b.String()
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// exactlyOnce checks the index against what was written: each correlation
// id in Events once, each event's lookup rows present (one per distinct
// caller id, one for its IP, one for its object) and no lookup row without
// its event, and the handler's stats total equal to the events. Rows the
// emulator lost (loss) are counted apart.
func (e *env) exactlyOnce(loss emulatorLoss) verdict {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var v verdict
	e.mu.Lock()
	written := make(map[string]int, len(e.written))
	for k, n := range e.written {
		written[k] = n
	}
	e.mu.Unlock()
	v.Written = len(written)

	rows, err := e.events(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	v.Rows = len(rows)
	seen := map[string]int{}
	vaults := map[string]bool{}
	want := map[string]map[string]int{index.KindCaller: {}, index.KindIP: {}, index.KindObject: {}}
	for _, r := range rows {
		seen[r.CorrelationID]++
		vaults[r.Vault] = true
		ids := map[string]bool{}
		for _, id := range []string{r.ObjectID, r.Upn, r.AppID} {
			if id != "" {
				ids[strings.ToLower(id)] = true
			}
		}
		want[index.KindCaller][r.RowKey] = len(ids)
		if r.CallerIPAddress != "" {
			want[index.KindIP][r.RowKey] = 1
		}
		if r.ObjectName != "" {
			want[index.KindObject][r.RowKey] = 1
		}
	}
	for id, n := range seen {
		switch {
		case written[id] == 0:
			v.Unknown += n
		case n > 1:
			v.Doubled = append(v.Doubled, id)
		}
	}
	for id := range written {
		switch {
		case seen[id] > 0:
			v.Distinct++
		case loss.events[id]:
			v.EmuMissing++
		default:
			v.Missing = append(v.Missing, id)
		}
	}
	sort.Strings(v.Missing)
	sort.Strings(v.Doubled)

	// Lookups: every event under each of its caller ids, its IP and its
	// object, in the postings; no entry without its event. A posting row
	// the emulator lost takes its entries with it: those are its loss.
	posted, err := e.postings(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	emuPostings := len(loss.rows[index.TablePostings]) > 0
	for _, kind := range []string{index.KindCaller, index.KindIP, index.KindObject} {
		got := posted[kind]
		var missing, extra int
		for rk, n := range want[kind] {
			if got[rk] < n {
				if emuPostings || loss.lost(index.TableEvents, rk) {
					v.EmuLookup += n - got[rk]
				} else {
					missing += n - got[rk]
				}
			}
		}
		for rk, n := range got {
			if n > want[kind][rk] {
				if loss.lost(index.TableEvents, rk) {
					v.EmuLookup += n - want[kind][rk]
				} else {
					extra += n - want[kind][rk]
				}
			}
		}
		if missing > 0 || extra > 0 {
			v.Lookup = append(v.Lookup, fmt.Sprintf("postings %s: %d missing, %d without their event", kind, missing, extra))
		}
	}

	for vault := range vaults {
		n, err := e.statsTotal(vault)
		if err != nil {
			v.StatsErr = err
			break
		}
		v.Stats += n
	}
	// Counts are committed with the checkpoint: when the emulator kept a
	// checkpoint and lost events it covers, the counts still hold them.
	v.StatsWant = []int64{int64(v.Rows)}
	if v.EmuMissing > 0 {
		v.StatsWant = append(v.StatsWant, int64(v.Rows+v.EmuMissing))
	}
	return v
}

// finish runs the exactly-once check, classifies any loss against what
// Azurite acknowledged, records the case's figures and fails the test when
// kvaudit lost, doubled or miscounted a record. Losses of the emulator
// (loss) are reported, not failed.
func (e *env) finish(name, fault string, loss emulatorLoss, note string) verdict {
	e.t.Helper()
	v := e.exactlyOnce(loss)
	f := figures{Case: name, Fault: fault, Written: v.Written, Distinct: v.Distinct, Rows: v.Rows, Stats: v.Stats,
		Retries: int(e.retries.Load()), Races: e.races(), Duration: time.Since(e.start), Result: "pass", Note: note}
	add := func(s string) {
		if f.Note != "" {
			f.Note += "; "
		}
		f.Note += s
	}
	if len(loss.events) > 0 && v.EmuMissing == 0 && v.EmuLookup == 0 {
		add("every row the emulator lost was written again (the checkpoint covering them was lost too, so kvaudit read them again)")
	}
	if v.EmuMissing > 0 || v.EmuLookup > 0 {
		f.Result = "pass*"
		add(fmt.Sprintf("emulator lost %d acknowledged events, %d lookup rows lost or orphaned (its checkpoint survived, so kvaudit has no reason to read them again)", v.EmuMissing, v.EmuLookup))
	}
	if !v.ok() {
		f.Result = "FAIL"
		acked := map[string]bool{}
		for _, r := range e.table.ackedIn(e.tables.Name(index.TableEvents)) {
			acked[r.CorrelationID] = true
		}
		var never, after int
		for _, id := range v.Missing {
			if acked[id] {
				after++
			} else {
				never++
			}
		}
		add(v.String())
		if len(v.Missing) > 0 {
			cls := fmt.Sprintf("of the %d missing, %d were never acknowledged by storage yet the checkpoint passed them (kvaudit's loss), %d were acknowledged and then went (a deleted table)",
				len(v.Missing), never, after)
			add(cls)
			e.t.Errorf("%s: %s", name, cls)
		}
		e.t.Errorf("%s: exactly-once check failed: %s", name, v)
	}
	report(f)
	treq, tfail := e.table.stats()
	breq, bfail := e.blobs.stats()
	e.t.Logf("%s: %s; host retries %d, checkpoint races %d, table requests %d (%d failed), blob requests %d (%d failed), %v",
		name, v, f.Retries, f.Races, treq, tfail, breq, bfail, f.Duration.Round(time.Millisecond))
	return v
}
