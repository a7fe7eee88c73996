package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

// auditLine is one Key Vault audit record.
func auditLine(vault string, t time.Time, i int, op string, status int, upn, ip, object string) []byte {
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":%q,"category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"%d","callerIpAddress":%q,"correlationId":"h-%05d","identity":{"claim":{"upn":%q}},"properties":{"id":"https://%s.vault.azure.net/secrets/%s/1","clientInfo":"=cmd|' /C calc'!A0","httpStatusCode":%d,"tlsVersion":"TLS1_2"}}`+"\n",
		parse.FormatTime(t), strings.ToUpper(vault), op, 5+i%50, ip, i, upn, vault, object, status)
}

func hourBlob(vault string, h time.Time) string {
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(vault), h.Year(), h.Month(), h.Day(), h.Hour())
}

var apiDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// loadAPIFixture indexes, through the BlobTrigger as the host invokes it,
// 60 records of vault kv1 over four hours across midnight, and the sample
// records. It returns how many kv1 records there are.
func (ta *testApp) loadAPIFixture() int {
	ta.t.Helper()
	blobs := map[string][]byte{}
	n := 0
	for i := 0; i < 60; i++ {
		t := apiDay.Add(22*time.Hour + time.Duration(i)*4*time.Minute + time.Duration(i)*time.Millisecond)
		op, status := "SecretGet", 200
		if i%4 == 3 {
			op, status = "SecretDelete", 403
		}
		name := hourBlob("kv1", t.Truncate(time.Hour))
		blobs[name] = append(blobs[name], auditLine("kv1", t, i, op, status, fmt.Sprintf("user%d@contoso.com", i%3), fmt.Sprintf("10.1.0.%d", i%5), fmt.Sprintf("s%d", i%7))...)
		n++
	}
	blobs[sampleBlob] = samples(ta.t)
	for name, data := range blobs {
		ta.put(name, data)
		if status, resp := ta.invoke(name, data, true, false); status != http.StatusOK {
			ta.t.Fatalf("BlobTrigger %s: %d %q", name, status, resp.Logs)
		}
	}
	return n
}

var (
	apiOnce sync.Once
	apiApp  *testApp
	apiKV1  int
)

// fixtureApp is one handler with the API fixture loaded, shared by the
// read-only tests.
func fixtureApp(t *testing.T) *testApp {
	t.Helper()
	apiOnce.Do(func() {
		// The real samples are of 2016 and 2024: keep them all.
		ta := newTestApp(t, keepSamples)
		apiKV1 = ta.loadAPIFixture()
		apiApp = ta
	})
	if apiApp == nil {
		t.Skip("API fixture not loaded (see the first test's failure)")
	}
	// The app and its tables outlive the test that loaded them; the
	// server closes with each test.
	ta := *apiApp
	ta.t = t
	ta.srv = startServer(t, ta.app)
	return &ta
}

// do is send without a body.
func (ta *testApp) do(method, path string, header http.Header) (*http.Response, []byte) {
	ta.t.Helper()
	return ta.send(method, path, "", header)
}

const kv1Window = "&from=2026-11-20T00:00:00Z&to=2026-11-22T00:00:00Z"

func TestQueryAPIErrorShapes(t *testing.T) {
	ta := fixtureApp(t)
	tests := []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/api/audit/events", 400, "at least one of vault, caller, ip or object"},
		{"GET", "/api/audit/events?vault=x'%20or%20PartitionKey%20ne%20'", 400, "vault: want a vault name"},
		{"GET", "/api/audit/events?vault=kv1&format=xml", 400, "format: want one of json, ndjson, csv"},
		{"GET", "/api/audit/events?vault=kv1&format=json&format=csv", 400, "format"},
		{"GET", "/api/audit/events?vault=kv1&colour=red", 400, `unknown parameter "colour"; accepted: vault, caller, ip, object, from, to`},
		{"GET", "/api/audit/events?vault=kv1&limit=5000", 400, "limit: want a whole number from 1 to 1000"},
		{"GET", "/api/audit/events?vault=%zz", 400, "not valid URL encoding"},
		{"GET", "/api/audit/events?vault=kv1&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", 400, "longer than 31 days"},
		{"GET", "/api/audit/events?vault=kv1&continuation=garbage", 400, "continuation: not a continuation of this query"},
		{"GET", "/api/audit/stats?vault=kv1&by=minute", 400, "by: \"minute\" is not a dimension; accepted: operation, caller"},
		{"GET", "/api/audit/detections?threshold=0", 400, "threshold: want a whole number from 1 to 1000000"},
		{"GET", "/api/audit/detections?caller=x", 400, "accepted: vault, from, to, threshold, slowMs"},
		{"GET", "/api/audit/nothing-here", 404, "no such path"},
		{"GET", "/api/audit/", 404, "GET /api/audit/events, GET /api/audit/stats"},
		{"GET", "/api/audit/events/", 404, "no such path"},
		{"POST", "/api/audit/nothing-here", 404, "no such path"},
		{"POST", "/api/audit/events?vault=kv1", 405, "method POST is not allowed on /api/audit/events: use GET"},
		{"DELETE", "/api/audit/stats", 405, "use GET"},
		{"PUT", "/api/audit/detections", 405, "use GET"},
		{"POST", "/api/audit/openapi.json", 405, "use GET"},
		{"POST", "/api/audit/status", 405, "use GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			ta.t = t
			resp, body := ta.do(tt.method, tt.path, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q: audit data must not be cached", cc)
			}
			var shape map[string]any
			if err := json.Unmarshal(body, &shape); err != nil || len(shape) != 1 {
				t.Fatalf("body %s is not {\"error\": …}", body)
			}
			msg, _ := shape["error"].(string)
			if !strings.Contains(msg, tt.says) {
				t.Fatalf("error %q, want it to say %q", msg, tt.says)
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "GET" {
				t.Fatalf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
}

// eventsPage is the JSON answer of /events.
type eventsPage struct {
	Events       []map[string]any `json:"events"`
	Continuation *string          `json:"continuation"`
}

func ids(evs []map[string]any) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i], _ = e["correlationId"].(string)
	}
	return out
}

// allPages follows continuations of an events query in JSON.
func (ta *testApp) allPages(query string) []string {
	ta.t.Helper()
	var all []string
	cont := ""
	for i := 0; i < 1000; i++ {
		path := "/api/audit/events?" + query
		if cont != "" {
			path += "&continuation=" + url.QueryEscape(cont)
		}
		resp, body := ta.do("GET", path, nil)
		if resp.StatusCode != 200 {
			ta.t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		var p eventsPage
		if err := json.Unmarshal(body, &p); err != nil {
			ta.t.Fatalf("%s: %v in %s", path, err, body)
		}
		all = append(all, ids(p.Events)...)
		if p.Continuation == nil {
			return all
		}
		cont = *p.Continuation
	}
	ta.t.Fatal("more than 1000 pages")
	return nil
}

func TestQueryAPIEventsFormatsAndPaging(t *testing.T) {
	ta := fixtureApp(t)
	resp, body := ta.do("GET", "/api/audit/events?vault=KV1&limit=1000"+kv1Window, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var page eventsPage
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != apiKV1 || page.Continuation != nil {
		t.Fatalf("%d events (continuation %v), want all %d on one page", len(page.Events), page.Continuation, apiKV1)
	}
	all := ids(page.Events)
	var last string
	for _, e := range page.Events {
		tm := e["time"].(string)
		if last != "" && tm > last {
			t.Fatalf("%s after %s: not newest first", tm, last)
		}
		last = tm
	}
	// The event shape: every documented field, numbers as numbers.
	e := page.Events[0]
	for _, k := range []string{"time", "vault", "subscriptionId", "resourceGroup", "resourceId", "operationName", "operationVersion",
		"category", "resultType", "resultSignature", "resultDescription", "durationMs", "callerIpAddress", "correlationId",
		"identity", "httpStatusCode", "requestUri", "objectName", "clientInfo", "tlsVersion", "properties", "source"} {
		if _, ok := e[k]; !ok {
			t.Errorf("event lacks %q: %v", k, e)
		}
	}
	if _, ok := e["durationMs"].(float64); !ok {
		t.Errorf("durationMs is %T", e["durationMs"])
	}
	if src, _ := e["source"].(map[string]any); src["blob"] == "" || src["offset"] == nil {
		t.Errorf("source %v", e["source"])
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$`).MatchString(e["time"].(string)) {
		t.Errorf("time %q is not as logged", e["time"])
	}

	// Paged by 7 across the day boundary: the same events in the same order.
	if paged := ta.allPages("vault=kv1&limit=7" + kv1Window); strings.Join(paged, ",") != strings.Join(all, ",") {
		t.Fatalf("paged by 7:\n%v\nwant\n%v", paged, all)
	}

	t.Run("ndjson", func(t *testing.T) {
		ta.t = t
		resp, body := ta.do("GET", "/api/audit/events?vault=kv1&format=ndjson&limit=25"+kv1Window, nil)
		if resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != 26 {
			t.Fatalf("%d lines, want 25 events and the continuation", len(lines))
		}
		var got []string
		for _, l := range lines[:25] {
			var ev map[string]any
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev["correlationId"].(string))
		}
		if strings.Join(got, ",") != strings.Join(all[:25], ",") {
			t.Fatalf("%v", got)
		}
		var tail struct{ Continuation string }
		if err := json.Unmarshal([]byte(lines[25]), &tail); err != nil || tail.Continuation == "" {
			t.Fatalf("last line %q", lines[25])
		}
		// The continuation carries on where the JSON page would.
		_, body = ta.do("GET", "/api/audit/events?vault=kv1&format=ndjson&limit=1000"+kv1Window+"&continuation="+url.QueryEscape(tail.Continuation), nil)
		if n := strings.Count(string(body), "\n"); n != apiKV1-25 {
			t.Fatalf("second page: %d lines, want %d", n, apiKV1-25)
		}
	})
	t.Run("csv", func(t *testing.T) {
		ta.t = t
		resp, body := ta.do("GET", "/api/audit/events?vault=kv1&format=csv&limit=10"+kv1Window, nil)
		if resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
		}
		text := string(body)
		i := strings.LastIndex(text, "#continuation=")
		if i < 0 || !strings.HasSuffix(text, "\n") {
			t.Fatalf("no continuation line in\n%s", text)
		}
		rows, err := csv.NewReader(strings.NewReader(text[:i])).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rows[0], ",") != strings.Join(csvColumns, ",") || len(rows) != 11 {
			t.Fatalf("header %v, %d rows", rows[0], len(rows))
		}
		col := map[string]int{}
		for i, c := range rows[0] {
			col[c] = i
		}
		for i, r := range rows[1:] {
			if r[col["correlationId"]] != all[i] {
				t.Fatalf("row %d is %s, want %s", i, r[col["correlationId"]], all[i])
			}
			// clientInfo "=cmd|…" is defused for spreadsheets.
			if ci := r[col["clientInfo"]]; !strings.HasPrefix(ci, "'=") {
				t.Fatalf("clientInfo %q is not defused", ci)
			}
			if !json.Valid([]byte(r[col["properties"]])) {
				t.Fatalf("properties %q", r[col["properties"]])
			}
		}
	})
	t.Run("empty page", func(t *testing.T) {
		ta.t = t
		for format, want := range map[string]string{"json": "{\"events\":[]}\n", "ndjson": "", "csv": strings.Join(csvColumns, ",") + "\n"} {
			resp, body := ta.do("GET", "/api/audit/events?vault=nosuchvault&format="+format+kv1Window, nil)
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("%s: %d %q, want %q", format, resp.StatusCode, body, want)
			}
		}
	})
}

func TestQueryAPISamplesThroughBlobTrigger(t *testing.T) {
	ta := fixtureApp(t)
	// The sample records of the README's curl example.
	want := 0
	for _, line := range bytes.Split(bytes.TrimSpace(samples(t)), []byte("\n")) {
		if bytes.Contains(line, []byte("VAULTS/TESTPERMISSIONVAULT")) && bytes.Contains(line, []byte(`"time":"2024-04-`)) {
			want++
		}
	}
	got := ta.allPages("vault=testpermissionvault&from=2024-04-01T00:00:00Z&to=2024-04-15T00:00:00Z&limit=5")
	if len(got) != want || want == 0 {
		t.Fatalf("%d events, want %d", len(got), want)
	}
	// A caller by UPN, whatever its case, across vaults.
	resp, body := ta.do("GET", "/api/audit/events?caller=John.Doe@dummy.onmicrosoft.com&from=2024-04-01T00:00:00Z&to=2024-04-20T00:00:00Z&limit=1000", nil)
	var page eventsPage
	if err := json.Unmarshal(body, &page); resp.StatusCode != 200 || err != nil || len(page.Events) < 20 {
		t.Fatalf("%d %v: %d events", resp.StatusCode, err, len(page.Events))
	}
	vaults := map[string]bool{}
	for _, e := range page.Events {
		vaults[e["vault"].(string)] = true
	}
	if len(vaults) < 3 {
		t.Fatalf("caller across vaults: %v", vaults)
	}
}

func TestQueryAPIStatsAndDetections(t *testing.T) {
	ta := fixtureApp(t)
	resp, body := ta.do("GET", "/api/audit/stats?vault=kv1&by=operation"+kv1Window, nil)
	var st struct {
		By     string
		Groups []struct {
			Key   string
			Count int
		}
		Total  int
		Source string
	}
	if err := json.Unmarshal(body, &st); resp.StatusCode != 200 || err != nil {
		t.Fatalf("%d %v %s", resp.StatusCode, err, body)
	}
	if st.By != "operation" || st.Total != apiKV1 || st.Source != "counts" || len(st.Groups) != 2 ||
		st.Groups[0].Key != "SecretGet" || st.Groups[0].Count != 45 || st.Groups[1].Count != 15 {
		t.Fatalf("%+v", st)
	}
	resp, body = ta.do("GET", "/api/audit/stats?vault=kv1&by=status&format=csv"+kv1Window, nil)
	if resp.StatusCode != 200 || string(body) != "key,count\n200,45\n403,15\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	resp, body = ta.do("GET", "/api/audit/detections?vault=kv1&threshold=5"+kv1Window, nil)
	var d struct {
		Summary  map[string]int
		Findings []map[string]any
	}
	if err := json.Unmarshal(body, &d); resp.StatusCode != 200 || err != nil {
		t.Fatalf("%d %v %s", resp.StatusCode, err, body)
	}
	// Three users read about 7 secrets each on either side of midnight
	// (threshold 5); 15 deletes were refused, each from its own user and IP.
	if d.Summary["refusedAccess"] != 15 || d.Summary["sensitiveOperation"] != 0 || d.Summary["massSecretRetrieval"] != 6 {
		t.Fatalf("%v", d.Summary)
	}
	resp, body = ta.do("GET", "/api/audit/detections?vault=kv1&format=ndjson"+kv1Window, nil)
	if resp.StatusCode != 200 || strings.Count(string(body), "\n") != 15 {
		t.Fatalf("ndjson findings: %d %s", resp.StatusCode, body)
	}
}

// The OpenAPI document describes exactly the API's routes: every path it
// documents is routed (and answers GET), and every route under /api/audit/
// is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ta := fixtureApp(t)
	resp, body := ta.do("GET", "/api/audit/openapi.json", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Description string `json:"description"`
		} `json:"info"`
		Paths map[string]map[string]struct {
			Parameters []struct {
				Ref  string `json:"$ref"`
				Name string `json:"name"`
			} `json:"parameters"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	// HEAD and every method but GET answer 405 on the API, and the
	// document says so on every operation.
	if !strings.Contains(doc.Info.Description, "HEAD") {
		t.Errorf("info.description does not say how HEAD is answered")
	}
	f := newFront(ta.app.routeTable(), nil, false)
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		documented[path] = true
		for method, op := range ops {
			req, _ := http.NewRequest(strings.ToUpper(method), path, nil)
			if rt, _ := f.match(req); rt == nil {
				t.Errorf("documented %s %s is not routed", strings.ToUpper(method), path)
			}
			if _, ok := op.Responses["405"]; !ok {
				t.Errorf("%s %s does not document its 405", strings.ToUpper(method), path)
			}
		}
	}
	for _, rt := range ta.app.routeTable() {
		if strings.HasPrefix(rt.path, apiPrefix) && !documented[rt.path] {
			t.Errorf("route %s is not in openapi.json", rt.path)
		}
	}
	// The parameters each query documents are those it accepts.
	for path, accepted := range map[string][]string{
		pathEvents:     append(slices.Clone(query.EventsParams), paramFormat),
		pathStats:      append(slices.Clone(query.StatsParams), paramFormat),
		pathDetections: append(slices.Clone(query.DetectionsParams), paramFormat),
	} {
		var names []string
		for _, p := range doc.Paths[path]["get"].Parameters {
			name := p.Name
			if p.Ref != "" {
				name = strings.TrimPrefix(p.Ref, "#/components/parameters/")
			}
			names = append(names, name)
		}
		sort.Strings(names)
		sort.Strings(accepted)
		if strings.Join(names, ",") != strings.Join(accepted, ",") {
			t.Errorf("%s documents %v, accepts %v", path, names, accepted)
		}
	}
}

// When storage cannot be reached, every query and the status answer 503
// in the API's JSON shape, with a reason and no SDK or network detail.
func TestQueryAPIStorageDownIs503(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the SDK's retries")
	}
	down := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + config.DevAccountKey +
		";BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
	ta := newTestApp(t, nil)
	s := *ta.app.settings
	s.Logs, _ = config.ParseConnectionString(down)
	s.Index = s.Logs
	broken, err := newApp(&s, ta.app.log)
	if err != nil {
		t.Fatal(err)
	}
	ta.srv.Config.Handler = broken.routes()
	for path, says := range map[string]string{
		"/api/audit/events?vault=kv1&format=csv": `"error":"the index storage is unavailable`,
		"/api/audit/stats?vault=kv1&by=day":      `"error":"the index storage is unavailable`,
		"/api/audit/detections":                  `"error":"the index storage is unavailable`,
		"/api/audit/status":                      `"error":"storage (the logs or the index account) is unavailable or busy; try again later"`,
	} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ta := *ta
			ta.t = t
			resp, body := ta.do("GET", path, nil)
			if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), says) {
				t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			// The SDK's and the network's words are the log's.
			for _, leak := range []string{"127.0.0.1", "dial", "://", "devstoreaccount1"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("the answer holds %q: %s", leak, body)
				}
			}
		})
	}
}

// Detections without a vault look at every vault kvaudit has indexed: a
// request over more vault-day partitions than 1000
// is refused with a 400 that names the count, the bound and what fits,
// before any partition is scanned; with a vault, or a window that fits, it
// is answered.
func TestDetectionsBoundedByVaultDays(t *testing.T) {
	ta := newTestApp(t, nil)
	for i := 0; i < 40; i++ {
		prefix := fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/BOUND%02d/", i)
		if err := ingest.RegisterVaultPrefix(context.Background(), ta.app.tables, prefix); err != nil {
			t.Fatal(err)
		}
	}
	to := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	window := func(days int) string {
		return "from=" + to.AddDate(0, 0, -days).Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339)
	}
	resp, body := ta.do("GET", "/api/audit/detections?"+window(30), nil)
	isJSONError(t, resp, body, http.StatusBadRequest,
		fmt.Sprintf("40 vaults × 31 days = 1240 vault-day partitions, more than one request may (%d): give vault, or a window of at most 24 days", query.MaxDetectionVaultDays))
	for _, q := range []string{"vault=bound07&" + window(30), window(24), window(1)} {
		if resp, body := ta.do("GET", "/api/audit/detections?"+q, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
	// The CLI says the same.
	code, _, errs := ta.runCLI("query", "detections", "-from", to.AddDate(0, 0, -30).Format(time.RFC3339), "-to", to.Format(time.RFC3339))
	if code != 2 || !strings.Contains(errs, "1240 vault-day partitions") {
		t.Errorf("handler query detections: exit %d, %s", code, errs)
	}
}
