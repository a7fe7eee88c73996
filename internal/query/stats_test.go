package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// statsFixture is the events fixture with some records in a neighbouring
// hour's blob, as Azure Monitor writes them (HAZARDS 4).
func statsFixture() []ev {
	evs := fixture()
	for i := range evs {
		switch i % 5 {
		case 0:
			evs[i].blob = evs[i].t.Truncate(time.Hour).Add(-time.Hour) // the previous hour's blob, still growing
		case 1:
			evs[i].blob = evs[i].t.Truncate(time.Hour).Add(2 * time.Hour) // a late arrival
		}
	}
	return evs
}

// oracleKey is the group of x by dimension by, computed from the fixture.
func oracleKey(x ev, by string) string {
	switch by {
	case ByOperation:
		return x.op
	case ByStatus:
		return strconv.Itoa(x.status)
	case ByCaller:
		for _, id := range []string{x.oid, x.upn, x.appid} {
			if id != "" {
				return strings.ToLower(id)
			}
		}
		return "-"
	case ByIP:
		return x.ip
	case ByObject:
		return strings.ToLower(x.object)
	case ByHour:
		return x.t.UTC().Truncate(time.Hour).Format("2006-01-02T15:04:05Z")
	case ByDay:
		return x.t.UTC().Format(time.DateOnly)
	}
	panic(by)
}

func oracleStats(evs []ev, by string, match func(ev) bool) (map[string]int64, int64) {
	groups := map[string]int64{}
	var total int64
	for _, x := range evs {
		x = x.norm()
		if !match(x) {
			continue
		}
		total++
		if k := oracleKey(x, by); k != "" {
			groups[k]++
		}
	}
	return groups, total
}

func (e *env) stats(query string) *Stats {
	e.t.Helper()
	sq, err := ParseStats(mustValues(e.t, query), time.Now(), Limits{})
	if err != nil {
		e.t.Fatalf("ParseStats(%q): %v", query, err)
	}
	st, err := e.q.Stats(context.Background(), sq)
	if err != nil {
		e.t.Fatalf("Stats(%q): %v", query, err)
	}
	for i := 1; i < len(st.Groups); i++ {
		a, b := st.Groups[i-1], st.Groups[i]
		if a.Count < b.Count || a.Count == b.Count && a.Key > b.Key {
			e.t.Fatalf("%s: groups not by descending count: %v", query, st.Groups)
		}
	}
	return st
}

func checkStats(t *testing.T, st *Stats, groups map[string]int64, total int64) {
	t.Helper()
	got := map[string]int64{}
	for _, g := range st.Groups {
		got[g.Key] = g.Count
	}
	if fmt.Sprint(got) != fmt.Sprint(groups) || st.Total != total {
		t.Fatalf("%s stats (%s): total %d groups %v\nwant total %d groups %v", st.By, st.Source, st.Total, got, total, groups)
	}
}

func inWindow(from, to string) func(ev) bool {
	f, tt := at(from), at(to)
	return func(x ev) bool { return !x.t.Before(f) && x.t.Before(tt) }
}

func TestStatsEqualIngestedCounts(t *testing.T) {
	e := newEnv(t)
	evs := statsFixture()
	names := e.load(0, evs)

	type tc struct {
		query  string
		source string
		match  func(ev) bool
	}
	aligned := "&from=2026-11-20T00:00:00Z&to=2026-11-22T00:00:00Z"
	ragged := "&from=2026-11-20T18:20:00.5Z&to=2026-11-21T03:10:00Z"
	inHour := "&from=2026-11-20T19:05:00Z&to=2026-11-20T19:55:00Z"
	and := func(fs ...func(ev) bool) func(ev) bool {
		return func(x ev) bool {
			for _, f := range fs {
				if !f(x) {
					return false
				}
			}
			return true
		}
	}
	v1 := func(x ev) bool { return x.vault == "vault1" }
	var cases []tc
	for _, by := range ByValues {
		cases = append(cases,
			tc{"vault=vault1&by=" + by + aligned, SourceCounts, and(v1, inWindow("2026-11-20T00:00:00Z", "2026-11-22T00:00:00Z"))},
			tc{"vault=vault1&by=" + by + ragged, SourceCounts, and(v1, inWindow("2026-11-20T18:20:00.5Z", "2026-11-21T03:10:00Z"))},
			tc{"vault=vault1&by=" + by + inHour, SourceCounts, and(v1, inWindow("2026-11-20T19:05:00Z", "2026-11-20T19:55:00Z"))},
			tc{"caller=" + bobApp + "&by=" + by + ragged, SourceScan, and(func(x ev) bool { return hasCaller(x, bobApp) }, inWindow("2026-11-20T18:20:00.5Z", "2026-11-21T03:10:00Z"))},
			tc{"ip=10.0.0.1&vault=vault2&by=" + by + aligned, SourceScan, func(x ev) bool { return x.ip == "10.0.0.1" && x.vault == "vault2" }},
			tc{"object=DB-password&by=" + by + aligned, SourceScan, func(x ev) bool { return strings.EqualFold(x.object, "db-password") }},
		)
	}
	ops := func(x ev) bool { return x.op == "SecretGet" || x.op == "KeyGet" }
	st4 := func(x ev) bool { return x.status >= 400 && x.status < 500 }
	for _, by := range []string{ByOperation, ByHour, ByDay} {
		cases = append(cases, tc{"vault=vault1&operation=SecretGet,keyget&by=" + by + ragged, SourceCounts,
			and(v1, ops, inWindow("2026-11-20T18:20:00.5Z", "2026-11-21T03:10:00Z"))})
	}
	for _, by := range []string{ByStatus, ByHour, ByDay} {
		cases = append(cases, tc{"vault=vault1&status=4xx&by=" + by + aligned, SourceCounts, and(v1, st4)})
	}
	// Marginal counts cannot tell these: they scan.
	cases = append(cases,
		tc{"vault=vault1&operation=SecretGet,KeyGet&by=caller" + aligned, SourceScan, and(v1, ops)},
		tc{"vault=vault1&status=4xx&by=operation" + aligned, SourceScan, and(v1, st4)},
		tc{"vault=vault1&status=4xx&operation=SecretGet,KeyGet&by=hour" + aligned, SourceScan, and(v1, st4, ops)},
	)

	check := func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.query, func(t *testing.T) {
				e.t = t
				sq, _ := ParseStats(mustValues(t, c.query), time.Now(), Limits{})
				groups, total := oracleStats(evs, sq.By, c.match)
				if total == 0 {
					t.Fatal("no fixture event in this case: the test would prove nothing")
				}
				st := e.stats(c.query)
				checkStats(t, st, groups, total)
				if st.Source != c.source {
					t.Errorf("source %q, want %q", st.Source, c.source)
				}
				if st.Source == SourceCounts && strings.Contains(c.query, aligned) && st.ScannedRows != 0 {
					t.Errorf("hour-aligned vault stats read %d index rows; want the counts alone", st.ScannedRows)
				}
			})
		}
	}
	t.Run("ingested once", check)
	// The same blobs again: the polling trigger re-fires on every change.
	for _, name := range names {
		if res := e.ingest(name); res.Records != 0 {
			t.Fatalf("re-ingest of %s indexed %d records", name, res.Records)
		}
	}
	t.Run("ingested twice", check)
	// Checkpoints lost: every blob is read again from byte 0, and its
	// counts are rebuilt rather than added to.
	for _, name := range names {
		if _, err := e.tables.Client(index.TableBlobs).DeleteEntity(context.Background(), ingest.BlobPartition(name), "c|"+index.BlobKey(name), nil); err != nil {
			t.Fatal(err)
		}
		if res := e.ingest(name); res.Records == 0 || res.From != 0 {
			t.Fatalf("after losing its checkpoint %s: %+v", name, res)
		}
	}
	t.Run("read again from zero", check)
}

func TestStatsLimitAndOmittedGroups(t *testing.T) {
	e := fixtureEnv(t)
	all := e.stats("vault=vault1&by=hour" + wholeFixture)
	st := e.stats("vault=vault1&by=hour&limit=3" + wholeFixture)
	if len(st.Groups) != 3 || st.OmittedGroups != len(all.Groups)-3 || st.Total != all.Total {
		t.Fatalf("limit 3: %d groups, %d omitted, total %d; all: %d groups, total %d", len(st.Groups), st.OmittedGroups, st.Total, len(all.Groups), all.Total)
	}
	keys := func(gs []Group) string {
		var ks []string
		for _, g := range gs {
			ks = append(ks, g.Key)
		}
		return strings.Join(ks, ",")
	}
	if keys(st.Groups) != keys(all.Groups[:3]) {
		t.Fatalf("limit keeps %v, want the first three of %v", st.Groups, all.Groups)
	}
}

func TestStatsScanLimit(t *testing.T) {
	e := fixtureEnv(t)
	e.q = &Querier{Tables: e.tables, MaxScanRows: 5}
	sq, err := ParseStats(mustValues(t, "caller="+bobApp+wholeFixture), time.Now(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.q.Stats(context.Background(), sq)
	var pe *ParamError
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "narrow from and to") {
		t.Fatalf("err %v, want a ParamError asking for a narrower window", err)
	}
	// The vault alone is answered from the counts: no scan, no limit.
	if st := e.stats("vault=vault1&by=caller&from=2026-11-20T00:00:00Z&to=2026-11-22T00:00:00Z"); st.ScannedRows != 0 {
		t.Fatalf("vault stats scanned %d rows", st.ScannedRows)
	}
}

func TestStatsGroupKeysSorted(t *testing.T) {
	// Ties are broken by key, so answers are stable.
	gs := []Group{{"b", 1}, {"a", 1}, {"c", 2}}
	sortGroups(gs)
	if fmt.Sprint(gs) != "[{c 2} {a 1} {b 1}]" {
		t.Fatal(gs)
	}
}

// Every indexed record is counted where stats reads it (issue 10 item 4):
// the real samples, each appended to the blob Azure Monitor would write it
// to (one has a resourceId without RESOURCEGROUPS/PROVIDERS, so its blob
// path is not the usual shape), plus a record of another vault and one
// far from its blob's hour. For every vault, stats (from the counts) and
// events agree.
func TestStatsAgreeWithEventsForOddBlobs(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("../parse/testdata/sekoia-intake-formats-keyvault.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{}
	type span struct{ from, to time.Time }
	spans := map[string]*span{}
	hours := map[string]map[time.Time]bool{} // vault → record hours
	add := func(name string, line []byte, vault string, at time.Time) {
		blobs[name] = append(append(blobs[name], line...), '\n')
		s := spans[vault]
		if s == nil {
			s = &span{at, at}
			spans[vault] = s
		}
		s.from, s.to = minTime(s.from, at), maxTime(s.to, at)
		if hours[vault] == nil {
			hours[vault] = map[time.Time]bool{}
		}
		hours[vault][at.Truncate(time.Hour)] = true
	}
	odd := false
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var head struct {
			Time       time.Time `json:"time"`
			ResourceID string    `json:"resourceId"`
		}
		if err := json.Unmarshal(line, &head); err != nil || head.ResourceID == "" {
			t.Fatalf("sample without time or resourceId: %s", line)
		}
		h := head.Time.UTC()
		name := fmt.Sprintf("resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
			strings.ToUpper(head.ResourceID), h.Year(), h.Month(), h.Day(), h.Hour())
		if _, ok := parse.ParseBlobPath(name); !ok {
			odd = true
		}
		vault := strings.ToLower(head.ResourceID[strings.LastIndex(head.ResourceID, "/")+1:])
		add(name, line, vault, h)
	}
	if !odd {
		t.Fatal("no sample has an unusual blob path: the test would prove less than it says")
	}
	// A record of vault2 in vault1's blob, and one a day from its blob's hour.
	hour := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	add(blobName("vault1", hour), ev{t: hour.Add(time.Minute), vault: "vault2"}.line(900), "vault2", hour.Add(time.Minute))
	add(blobName("vault1", hour), ev{t: hour.Add(-26 * time.Hour)}.line(901), "vault1", hour.Add(-26*time.Hour))
	add(blobName("vault1", hour), ev{t: hour.Add(2 * time.Minute)}.line(902), "vault1", hour.Add(2*time.Minute))

	ctx := context.Background()
	for name, b := range blobs {
		ab := e.cc.NewAppendBlobClient(name)
		if _, err := ab.Create(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(b)), nil); err != nil {
			t.Fatal(err)
		}
		e.ingest(name)
	}
	var events, total int
	for vault, s := range spans {
		q := fmt.Sprintf("vault=%s&from=%s&to=%s&limit=1000", vault, s.from.Truncate(time.Hour).Format(time.RFC3339), s.to.Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339))
		ids, _ := e.events(q)
		st := e.stats(strings.Replace(q, "&limit=1000", "", 1))
		if int64(len(ids)) != st.Total || st.Source != SourceCounts {
			t.Errorf("vault %s: %d events, stats total %d (%s)", vault, len(ids), st.Total, st.Source)
		}
		events += len(ids)
		total += int(st.Total)
	}
	if events != 35 || total != 35 {
		t.Fatalf("%d events and stats total %d, want 35 each", events, total)
	}
	// Hour by hour too: the narrowest window stats answers from counts.
	for vault, hs := range hours {
		for h := range hs {
			q := fmt.Sprintf("vault=%s&from=%s&to=%s", vault, h.Format(time.RFC3339), h.Add(time.Hour).Format(time.RFC3339))
			ids, _ := e.events(q + "&limit=1000")
			if st := e.stats(q); int64(len(ids)) != st.Total || len(ids) == 0 {
				t.Errorf("vault %s hour %s: %d events, stats total %d", vault, h.Format(time.RFC3339), len(ids), st.Total)
			}
		}
	}
}
