package query

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// env is one test's private container and tables in the shared Azurite,
// with an ingester to load fixtures the way production does and a Querier
// over the same tables.
type env struct {
	t      testing.TB
	cc     *container.Client
	tables *index.Tables
	in     *ingest.Ingester
	q      *Querier
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := ingesttest.New(t)
	e.Ingester.Concurrency = 8
	return &env{t: t, cc: e.Container, tables: e.Tables, in: e.Ingester, q: &Querier{Tables: e.Tables}}
}

// ev is one audit record of a fixture. Zero fields are left out of the
// record, except those noted.
type ev struct {
	t      time.Time
	vault  string // default "vault1"
	op     string // default "SecretGet"
	status int    // properties.httpStatusCode; default 200, -1 for none
	sig    string // resultSignature; default from status
	oid    string
	upn    string
	appid  string
	ip     string
	object string // secret name
	tls    string
	dur    float64 // durationMs; default 10, -1 for none
	client string
	blob   time.Time // the hour of the blob it is appended to; default its own hour
}

func (e ev) norm() ev {
	if e.vault == "" {
		e.vault = "vault1"
	}
	if e.op == "" {
		e.op = "SecretGet"
	}
	if e.status == 0 {
		e.status = 200
	}
	if e.dur == 0 {
		e.dur = 10
	}
	if e.blob.IsZero() {
		e.blob = e.t.UTC().Truncate(time.Hour)
	}
	return e
}

// line is e as Key Vault logs it; i makes its correlation id unique.
func (e ev) line(i int) []byte {
	e = e.norm()
	var props []string
	if e.status > 0 {
		props = append(props, fmt.Sprintf(`"httpStatusCode":%d`, e.status))
	}
	if e.object != "" {
		props = append(props, fmt.Sprintf(`"id":"https://%s.vault.azure.net/secrets/%s/0123"`, e.vault, e.object),
			fmt.Sprintf(`"requestUri":"https://%s.vault.azure.net/secrets/%s?api-version=7.4"`, e.vault, e.object))
	}
	if e.tls != "" {
		props = append(props, fmt.Sprintf(`"tlsVersion":%q`, e.tls))
	}
	if e.client != "" {
		props = append(props, fmt.Sprintf(`"clientInfo":%q`, e.client))
	}
	var claims []string
	if e.oid != "" {
		claims = append(claims, fmt.Sprintf(`"oid":%q`, e.oid))
	}
	if e.upn != "" {
		claims = append(claims, fmt.Sprintf(`"upn":%q`, e.upn))
	}
	if e.appid != "" {
		claims = append(claims, fmt.Sprintf(`"appid":%q`, e.appid))
	}
	sig := e.sig
	if sig == "" {
		sig = map[int]string{200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}[e.status]
	}
	dur := ""
	if e.dur >= 0 {
		dur = fmt.Sprintf(`,"durationMs":"%g"`, e.dur)
	}
	ip := ""
	if e.ip != "" {
		ip = fmt.Sprintf(`,"callerIpAddress":%q`, e.ip)
	}
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":%q,"operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":%q%s%s,"correlationId":"c-%06d","identity":{"claim":{%s}},"properties":{%s}}`+"\n",
		parse.FormatTime(e.t), strings.ToUpper(e.vault), e.op, sig, dur, ip, i, strings.Join(claims, ","), strings.Join(props, ","))
}

// blobContents groups evs into their blobs (vault × blob hour), as load
// writes them.
func blobContents(base int, evs []ev) map[string][]byte {
	blobs := map[string][]byte{}
	for i, x := range evs {
		x = x.norm()
		name := blobName(x.vault, x.blob)
		blobs[name] = append(blobs[name], x.line(base+i)...)
	}
	return blobs
}

// blobName is an Azure Monitor path for vault at hour.
func blobName(vault string, hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(vault), hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}

// load appends evs to their blobs (vault × blob hour) and ingests each
// blob; it returns the blob names. Correlation ids number the events from
// base.
func (e *env) load(base int, evs []ev) []string {
	e.t.Helper()
	blobs := blobContents(base, evs)
	names := make([]string, 0, len(blobs))
	for name := range blobs {
		names = append(names, name)
	}
	sort.Strings(names)
	ctx := context.Background()
	for _, name := range names {
		ab := e.cc.NewAppendBlobClient(name)
		if _, err := ab.Create(ctx, nil); err != nil {
			e.t.Fatal(err)
		}
		data := blobs[name]
		for len(data) > 0 {
			n := min(len(data), 4<<20)
			if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data[:n])), nil); err != nil {
				e.t.Fatal(err)
			}
			data = data[n:]
		}
		e.ingest(name)
	}
	return names
}

func (e *env) ingest(name string) ingest.Result {
	e.t.Helper()
	res, err := e.in.IngestBlob(context.Background(), name)
	if err != nil {
		e.t.Fatalf("IngestBlob %s: %v", name, err)
	}
	return res
}

// events runs an events query given as URL parameters and follows its
// continuations to the end (at most 1000 pages), returning every event's
// correlation id in order and the number of pages.
func (e *env) events(query string) (ids []string, pages int) {
	e.t.Helper()
	v := mustValues(e.t, query)
	for pages = 1; pages <= 1000; pages++ {
		eq, err := ParseEvents(v, time.Now(), Limits{})
		if err != nil {
			e.t.Fatalf("ParseEvents(%q): %v", query, err)
		}
		var last time.Time
		next, err := e.q.Events(context.Background(), eq, func(r *parse.Record) error {
			if !last.IsZero() && r.Time.After(last) {
				e.t.Errorf("%s: %s after %s: not newest first", query, r.Time, last)
			}
			last = r.Time
			ids = append(ids, r.CorrelationID)
			return nil
		})
		if err != nil {
			e.t.Fatalf("Events(%q) page %d: %v", query, pages, err)
		}
		if next == "" {
			return ids, pages
		}
		v.Set(ParamContinuation, next)
	}
	e.t.Fatalf("%s: more than 1000 pages", query)
	return nil, 0
}

func mustValues(t testing.TB, query string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// want lists, newest first, the correlation ids of the fixture events that
// match, as an oracle independent of the index.
func want(evs []ev, base int, match func(ev) bool) []string {
	type item struct {
		t  time.Time
		id string
		i  int
	}
	var items []item
	for i, x := range evs {
		x = x.norm()
		if match(x) {
			items = append(items, item{x.t, fmt.Sprintf("c-%06d", base+i), i})
		}
	}
	sort.SliceStable(items, func(a, b int) bool { return items[a].t.After(items[b].t) })
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	return ids
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}
