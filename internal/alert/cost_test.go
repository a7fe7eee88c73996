package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/query"
)

// costTransport counts the table requests an engine sends and the
// entities the service answers, by table, and notes the Events ranges
// its queries read: the rows the service reads server-side for them are
// counted afterwards (a filtered query returns only its matches, but the
// service reads every row of the RowKey range to find them).
type costTransport struct {
	next   http.RoundTripper
	prefix string

	mu       sync.Mutex
	requests map[string]int
	entities map[string]int
	ranges   map[eventsRange]bool
}

// eventsRange is one Events query's partition and RowKey bounds.
type eventsRange struct{ pk, lo, hi string }

var rangeFilter = regexp.MustCompile(`PartitionKey eq '((?:[^']|'')*)' and RowKey ge '((?:[^']|'')*)' and RowKey lt '((?:[^']|'')*)'`)

func newCostTransport(prefix string) *costTransport {
	c := &costTransport{next: http.DefaultTransport.(*http.Transport).Clone(), prefix: prefix}
	c.reset()
	return c
}

func (c *costTransport) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests, c.entities, c.ranges = map[string]int{}, map[string]int{}, map[eventsRange]bool{}
}

// table is the short name of the table a request is for ("$batch",
// "Tables" for the service's own paths).
func (c *costTransport) table(path string) string {
	last := path[strings.LastIndexByte(path, '/')+1:]
	if i := strings.IndexByte(last, '('); i >= 0 {
		last = last[:i]
	}
	return strings.TrimPrefix(last, c.prefix)
}

func (c *costTransport) Do(req *http.Request) (*http.Response, error) {
	table := c.table(req.URL.Path)
	q := req.URL.Query()
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	n := 0
	if req.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		var page struct {
			Value []json.RawMessage `json:"value"`
		}
		if json.Unmarshal(b, &page) == nil && page.Value != nil {
			n = len(page.Value)
		} else {
			n = 1 // a point read
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests[table]++
	c.entities[table] += n
	if table == index.TableEvents && q.Get("NextRowKey") == "" && q.Get("NextPartitionKey") == "" {
		if m := rangeFilter.FindStringSubmatch(q.Get("$filter")); m != nil {
			un := func(s string) string { return strings.ReplaceAll(s, "''", "'") }
			c.ranges[eventsRange{un(m[1]), un(m[2]), un(m[3])}] = true
		}
	}
	return resp, nil
}

// evalCost is what one evaluation cost in storage.
type evalCost struct {
	Requests   int            // table requests
	ByTable    map[string]int // … by table
	Entities   int            // entities the service answered
	EventsRead int            // Events rows in the RowKey ranges read: what the service reads
}

func (c evalCost) String() string {
	var tables []string
	for t, n := range c.ByTable {
		tables = append(tables, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(tables)
	return fmt.Sprintf("%d requests (%s), %d entities answered, %d Events rows read by the service",
		c.Requests, strings.Join(tables, ", "), c.Entities, c.EventsRead)
}

// take returns the cost counted since the last reset, the Events rows of
// its ranges counted with e's own (uncounted) client.
func (c *costTransport) take(e *env) evalCost {
	c.mu.Lock()
	out := evalCost{ByTable: map[string]int{}}
	for t, n := range c.requests {
		out.Requests += n
		out.ByTable[t] = n
	}
	for _, n := range c.entities {
		out.Entities += n
	}
	var ranges []eventsRange
	for r := range c.ranges {
		ranges = append(ranges, r)
	}
	c.mu.Unlock()
	sel := "RowKey"
	for _, r := range ranges {
		filter := "PartitionKey eq " + index.ODataString(r.pk) + " and RowKey ge " + index.ODataString(r.lo) + " and RowKey lt " + index.ODataString(r.hi)
		pager := e.ix.Tables.Client(index.TableEvents).NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: &sel})
		for pager.More() {
			page, err := pager.NextPage(context.Background())
			if err != nil {
				e.t.Fatal(err)
			}
			out.EventsRead += len(page.Entities)
		}
	}
	return out
}

// countedEngine is e.engine whose querier and store reach Azurite
// through a costTransport.
func (e *env) countedEngine(tuning string, sinks ...Sink) (*Engine, *costTransport) {
	e.t.Helper()
	acct, err := config.ParseConnectionString(azuritetest.Require(e.t).ConnectionString)
	if err != nil {
		e.t.Fatal(err)
	}
	prefix := e.ix.Tables.Name("")
	ct := newCostTransport(prefix)
	cred, err := aztables.NewSharedKeyCredential(acct.Name, acct.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := aztables.NewServiceClientWithSharedKey(acct.TableURL+"/", cred, &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: ct}})
	if err != nil {
		e.t.Fatal(err)
	}
	tables := index.NewTables(svc, prefix)
	eng := e.engine(tuning, sinks...)
	eng.Querier = &query.Querier{Tables: tables}
	eng.Store = NewStore(tables)
	return eng, ct
}

// forget deletes the record of vault's last evaluation of testDay: the
// next evaluation is a first one.
func (e *env) forget(vault string) {
	e.t.Helper()
	_, err := e.ix.Tables.Client(TableAlerts).DeleteEntity(context.Background(), "e|"+testDay.Format(index.DayLayout), index.EncodeKeyPart(vault), nil)
	if err != nil && !strings.Contains(err.Error(), "ResourceNotFound") {
		e.t.Fatal(err)
	}
}

// busyDay is a busy vault-day: perHour requests in each hour of testDay,
// mostly SecretGets of 20 applications, with in each hour one backup (a
// sensitive operation), refused requests of a scanner, old-TLS requests
// of a legacy client and slow requests.
func busyDay(vault string, perHour int) []rec {
	var rs []rec
	for h := 0; h < 24; h++ {
		for i := 0; i < perHour; i++ {
			r := rec{at: time.Duration(h)*time.Hour + time.Duration(i)*time.Hour/time.Duration(perHour), vault: vault,
				oid: fmt.Sprintf("app%d-oid", i%20), object: fmt.Sprintf("cfg%d", i%50)}
			switch {
			case i == perHour/2:
				r.op, r.oid, r.object = "SecretBackup", "backup-oid", "db"
			case i%100 == 3:
				r.status, r.oid, r.ip = 403, "scanner-oid", "203.0.113.9"
			case i%200 == 7:
				r.tls, r.oid = "TLS1_0", "legacy-oid"
			case i%250 == 11:
				r.dur = 1500
			}
			rs = append(rs, r)
		}
	}
	return rs
}

// allKinds switches every kind on.
const allKinds = `{"kinds":{"refusedAccess":{"enabled":true},"oldTls":{"enabled":true},"slowRequests":{"enabled":true}}}`

// BenchmarkEvaluationCost counts the storage requests, the entities
// answered and the Events rows the service reads for one evaluation of a
// busy vault-day (24 hours of 500 requests), under the default tuning
// and with every kind on: a first evaluation of the day, and one after a
// record appended to the day's last hour or, late, to an earlier hour —
// what each CatchUp tick does for an active vault.
//
//	go test -run '^$' -bench EvaluationCost -benchtime 3x ./internal/alert/
func BenchmarkEvaluationCost(b *testing.B) {
	const vault, perHour = "busy", 500
	for _, tc := range []struct{ name, tuning string }{{"default", ""}, {"allKinds", allKinds}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b)
			e.load(0, busyDay(vault, perHour)...)
			eng, ct := e.countedEngine(tc.tuning)
			ctx := context.Background()
			vd := []VaultDay{{Vault: vault, Day: testDay}}
			if rep := eng.Evaluate(ctx, vd); len(rep.Errors) > 0 || rep.Evaluated != 1 {
				b.Fatalf("first evaluation: %+v", rep)
			}
			next := 1_000_000
			appendAt := func(at time.Duration) func() {
				return func() {
					next++
					e.load(next, rec{at: at, vault: vault, oid: "app1-oid", object: "cfg1"})
				}
			}
			for _, step := range []struct {
				name    string
				prepare func()
			}{
				{"wholeDay", func() { e.forget(vault) }},
				{"appendLastHour", appendAt(23*time.Hour + 59*time.Minute)},
				{"appendEarlierHour", appendAt(3*time.Hour + 30*time.Minute)},
			} {
				b.Run(step.name, func(b *testing.B) {
					var sum evalCost
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						step.prepare()
						ct.reset()
						b.StartTimer()
						rep := eng.Evaluate(ctx, vd)
						b.StopTimer()
						if len(rep.Errors) > 0 || rep.Evaluated != 1 {
							b.Fatalf("%+v", rep)
						}
						c := ct.take(e)
						b.Logf("%s/%s: %s", tc.name, step.name, c)
						sum.Requests += c.Requests
						sum.Entities += c.Entities
						sum.EventsRead += c.EventsRead
					}
					n := float64(b.N)
					b.ReportMetric(float64(sum.Requests)/n, "requests/eval")
					b.ReportMetric(float64(sum.Entities)/n, "entities/eval")
					b.ReportMetric(float64(sum.EventsRead)/n, "eventsRead/eval")
				})
			}
		})
	}
}

// hourly is a quiet day: 10 gets in each hour, each hour's by its own
// caller (no mass retrieval), and alice deleting a secret at 02:10.
func hourly(vault string) []rec {
	var rs []rec
	for h := 0; h < 24; h++ {
		for i := 0; i < 10; i++ {
			rs = append(rs, rec{at: time.Duration(h)*time.Hour + time.Duration(i)*time.Minute, vault: vault, oid: fmt.Sprintf("app%d-oid", h), object: "cfg"})
		}
	}
	return append(rs, rec{at: 2*time.Hour + 10*time.Minute, vault: vault, op: "SecretDelete", oid: "alice-oid", object: "old"})
}

// An evaluation after a record appended to one hour reads that hour's
// Events rows only; a late record appended to an earlier hour still
// alerts, once; a finding alerted already is not alerted again from a
// later hour; a day recorded without hourly totals is read whole.
func TestEvaluationReadsChangedHours(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	e.load(0, hourly("av1")...)
	eng, ct := e.countedEngine(allKinds, webhook(t, r))
	ctx := context.Background()
	evaluate := func(what string, alerts int) evalCost {
		t.Helper()
		ct.reset()
		rep := eng.Evaluate(ctx, []VaultDay{day})
		if len(rep.Errors) > 0 || rep.Evaluated != 1 || rep.Alerts != alerts || rep.Delivered != alerts {
			t.Fatalf("%s: %+v, want %d alerts", what, rep, alerts)
		}
		c := ct.take(e)
		t.Logf("%s: %s", what, c)
		return c
	}

	if c := evaluate("first evaluation", 1); c.EventsRead != 241 {
		t.Fatalf("first evaluation: the service read %d Events rows, want the day's 241", c.EventsRead)
	}
	// CatchUp indexes one more get of 20:00: the next evaluation reads
	// hour 20 alone.
	e.load(1000, rec{at: 20*time.Hour + 30*time.Minute, vault: "av1", oid: "app20-oid", object: "cfg"})
	c := evaluate("a get appended to 20:00", 0)
	if c.EventsRead != 11 || c.ByTable[index.TableEvents] != 1 {
		t.Fatalf("append to 20:00: %d Events requests read %d rows, want one request over hour 20's 11", c.ByTable[index.TableEvents], c.EventsRead)
	}
	if c.ByTable[index.TablePostings] != 0 {
		t.Fatalf("append to 20:00: %d Postings requests, want none (no mass-retrieval candidate)", c.ByTable[index.TablePostings])
	}
	// A late record, into 03:00's blob, long after 03:00 (mallory purges
	// a secret), indexed by the same tick as a get of 21:00: both hours
	// are read, and the purge alerts.
	e.load(1001,
		rec{at: 3*time.Hour + 59*time.Minute, vault: "av1", op: "SecretPurge", oid: "mallory-oid", object: "crown"},
		rec{at: 21*time.Hour + 30*time.Minute, vault: "av1", oid: "app21-oid", object: "cfg"})
	if c := evaluate("a purge appended late to 03:00, a get to 21:00", 1); c.EventsRead != 22 || c.ByTable[index.TableEvents] != 2 {
		t.Fatalf("late purge: %d Events requests read %d rows, want hours 3 and 21 (11 each)", c.ByTable[index.TableEvents], c.EventsRead)
	}
	// alice deletes the same secret again at 07:00: the day's finding
	// was alerted at 02:10; hours 7 and 8 (one window) are read.
	e.load(1002,
		rec{at: 7*time.Hour + 50*time.Minute, vault: "av1", op: "SecretDelete", oid: "alice-oid", object: "old"},
		rec{at: 8*time.Hour + 5*time.Minute, vault: "av1", oid: "app8-oid", object: "cfg"})
	if c := evaluate("alice's second delete", 0); c.EventsRead != 22 || c.ByTable[index.TableEvents] != 1 {
		t.Fatalf("second delete: %d Events requests read %d rows, want one over hours 7 and 8 (22)", c.ByTable[index.TableEvents], c.EventsRead)
	}
	var got []string
	for _, d := range r.deliveries() {
		var ev CloudEvent
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatal(err)
		}
		f := ev.Data.Finding
		got = append(got, fmt.Sprintf("%s/%s/%s/%d", f.Operation, f.Caller, f.Object, f.Count))
	}
	if w := "SecretDelete/alice-oid/old/1 SecretPurge/mallory-oid/crown/1"; strings.Join(sortedCopy(got), " ") != w {
		t.Fatalf("delivered %v, want %s", got, w)
	}
	if n := len(byID(t, r.deliveries())); n != 2 {
		t.Fatalf("%d distinct alerts", n)
	}
	// A record of the last evaluation without hourly totals (as an
	// earlier kvaudit wrote it) and another total: the whole day is read.
	if err := eng.Store.SetEvaluated(ctx, "av1", testDay, Evaluation{Total: 1, Tuning: eng.Tuning.Hash()}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c := evaluate("no hourly totals recorded", 0); c.EventsRead != 246 {
		t.Fatalf("no hourly totals: the service read %d Events rows, want the day's 246", c.EventsRead)
	}
}

// A finding the changed hours show that its kind's threshold or an
// allow-list entry looked up in the index must judge on the whole day is
// judged on the whole day: two refused requests at 05:00 stay under a
// threshold of 2; a third at 21:00 passes it, and the alert counts 3.
func TestEvaluationJudgesThresholdsOnTheDay(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil)
	rs := hourly("av1")
	rs = append(rs,
		rec{at: 5*time.Hour + time.Minute, vault: "av1", status: 403, oid: "eve-oid", ip: "203.0.113.9", object: "crown"},
		rec{at: 5*time.Hour + 2*time.Minute, vault: "av1", status: 403, oid: "eve-oid", ip: "203.0.113.9", object: "crown"})
	e.load(0, rs...)
	eng, ct := e.countedEngine(`{"kinds":{"sensitiveOperation":{"enabled":false},"refusedAccess":{"enabled":true,"threshold":2}}}`, webhook(t, r))
	ctx := context.Background()
	if rep := eng.Evaluate(ctx, []VaultDay{day}); rep.Alerts != 0 || rep.Suppressed != 1 || len(rep.Errors) > 0 {
		t.Fatalf("two refused: %+v", rep)
	}
	e.load(1000, rec{at: 21 * time.Hour, vault: "av1", status: 403, oid: "eve-oid", ip: "203.0.113.9", object: "crown"})
	ct.reset()
	if rep := eng.Evaluate(ctx, []VaultDay{day}); rep.Alerts != 1 || rep.Delivered != 1 || len(rep.Errors) > 0 {
		t.Fatalf("third refused: %+v", rep)
	}
	c := ct.take(e)
	t.Logf("third refused: %s", c)
	// Hour 21, then the whole day for refused access.
	if c.ByTable[index.TableEvents] != 2 || c.EventsRead != 11+244 {
		t.Fatalf("%d Events requests read %d rows, want hour 21's 11 then the day's 244", c.ByTable[index.TableEvents], c.EventsRead)
	}
	ds := r.deliveries()
	var ev CloudEvent
	if len(ds) != 1 || json.Unmarshal(ds[0].body, &ev) != nil || ev.Data.Finding.Count != 3 || ev.Data.Finding.Caller != "eve-oid" {
		t.Fatalf("delivered %d: %+v, want eve's 3 refused requests", len(ds), ev.Data.Finding)
	}
	// More of it later: alerted already, hour 22 alone is read.
	e.load(1001, rec{at: 22 * time.Hour, vault: "av1", status: 403, oid: "eve-oid", ip: "203.0.113.9", object: "crown"})
	ct.reset()
	if rep := eng.Evaluate(ctx, []VaultDay{day}); rep.Alerts != 0 || len(rep.Errors) > 0 {
		t.Fatalf("fourth refused: %+v", rep)
	}
	if c := ct.take(e); c.ByTable[index.TableEvents] != 1 || c.EventsRead != 11 {
		t.Fatalf("fourth refused: %d Events requests read %d rows, want hour 22's 11", c.ByTable[index.TableEvents], c.EventsRead)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func TestParseHours(t *testing.T) {
	valid := strings.Repeat("0,", 23) + "7"
	for _, c := range []struct {
		in   string
		want []int64
	}{
		{valid, append(make([]int64, 23), 7)},
		{"", nil},
		{strings.Repeat("1,", 22) + "1", nil},                      // 23 hours
		{strings.Repeat("1,", 24) + "1", nil},                      // 25
		{strings.Repeat("0,", 23) + "-1", nil},                     // negative
		{strings.Repeat("0,", 23) + "x", nil},                      // not a number
		{strings.Repeat("0,", 23) + "1e3", nil},                    // not decimal
		{strings.Repeat("0,", 23) + strings.Repeat("9", 600), nil}, // longer than 24 numbers can be
	} {
		got := parseHours(c.in)
		if fmt.Sprint(got) != fmt.Sprint(c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("parseHours(%.40q…) = %v, want %v", c.in, got, c.want)
		}
		if got != nil && parseHours(formatHours(got)) == nil {
			t.Errorf("formatHours(%v) does not read back", got)
		}
	}
}

func TestChangedHours(t *testing.T) {
	d := testDay
	h := func(n int) time.Time { return d.Add(time.Duration(n) * time.Hour) }
	prev := make([]int64, 24)
	for _, c := range []struct {
		changed []int
		want    string
	}{
		{nil, "[]"},
		{[]int{23}, fmt.Sprint([]query.Window{{From: h(23), To: h(24)}})},
		{[]int{0, 1, 2, 5, 22, 23}, fmt.Sprint([]query.Window{{From: h(0), To: h(3)}, {From: h(5), To: h(6)}, {From: h(22), To: h(24)}})},
	} {
		cur := make([]int64, 24)
		for _, i := range c.changed {
			cur[i] = 1
		}
		got := changedHours(d, prev, cur)
		if got == nil || fmt.Sprint(got) != c.want {
			t.Errorf("changed %v: %v, want %s", c.changed, got, c.want)
		}
	}
}
