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
