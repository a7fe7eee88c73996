package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// frontRoutes is every route the handler serves, as a client reaches it:
// method, path with a valid query, and a body.
var frontRoutes = []struct{ method, path, body string }{
	{"GET", "/", ""},
	{"POST", "/BlobTrigger", "{}"},
	{"POST", "/CatchUp", "{}"},
	{"GET", "/api/audit/events?vault=kv1", ""},
	{"GET", "/api/audit/stats?vault=kv1", ""},
	{"GET", "/api/audit/detections", ""},
	{"GET", "/api/audit/status", ""},
	{"GET", "/api/audit/openapi.json", ""},
	{"GET", "/api/audit/vaults", ""},
	{"GET", "/api/audit/ui", ""},
	{"GET", "/api/audit/ui/app.js", ""},
	{"GET", "/api/audit/ui/app.css", ""},
}

const testKey = "s3cret-key"

// send sends one request with body and header.
func (ta *testApp) send(method, path, body string, header http.Header) (*http.Response, []byte) {
	ta.t.Helper()
	req, err := http.NewRequest(method, ta.srv.URL+path, strings.NewReader(body))
	if err != nil {
		ta.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ta.t.Fatal(err)
	}
	return resp, b
}

func withCode(path, code string) string {
	if strings.Contains(path, "?") {
		return path + "&code=" + code
	}
	return path + "?code=" + code
}

// Every route, without a key, with a wrong one and with the right one
// (header or ?code=), in each way the handler runs: under the host (the
// host checks function keys, and its own invocations carry none, so the
// handler checks nothing, even with AuditApiKey set), standalone without a
// key (loopback only: nothing to check) and standalone with AuditApiKey
// (every route requires it). Where the handler may listen in each mode is
// TestListenAddr's.
func TestEveryRouteKeyAndMode(t *testing.T) {
	modes := []struct {
		name     string
		env      map[string]string
		enforced bool
	}{
		{"host", map[string]string{config.SettingCustomPort: "7071", config.SettingAPIKey: testKey}, false},
		{"standalone without key", nil, false},
		{"standalone with key", map[string]string{config.SettingAPIKey: testKey}, true},
	}
	keys := []struct {
		name   string
		header http.Header
		code   string
		right  bool
	}{
		{"no key", nil, "", false},
		{"wrong key", http.Header{"X-Functions-Key": {"s3cret-kez"}}, "", false},
		{"wrong code", nil, "nope", false},
		{"key prefix", nil, "s3cret", false},
		{"right key", http.Header{"X-Functions-Key": {testKey}}, "", true},
		{"right code", nil, testKey, true},
	}
	for _, m := range modes {
		ta := newTestApp(t, m.env)
		// CatchUp expects the tables an ingest creates.
		if err := ta.app.tables.Ensure(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, rt := range frontRoutes {
			for _, k := range keys {
				t.Run(fmt.Sprintf("%s/%s %s/%s", m.name, rt.method, rt.path, k.name), func(t *testing.T) {
					ta.t = t
					path := rt.path
					if k.code != "" {
						path = withCode(path, k.code)
					}
					header := k.header.Clone()
					if rt.method == http.MethodPost {
						header = http.Header{"Content-Type": {"application/json"}}
						maps.Copy(header, k.header)
					}
					resp, body := ta.send(rt.method, path, rt.body, header)
					if m.enforced && !k.right {
						if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `{"error":"missing or wrong API key`) {
							t.Fatalf("%d %s, want 401 and the JSON error", resp.StatusCode, body)
						}
						return
					}
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%d %s, want 200", resp.StatusCode, body)
					}
				})
			}
		}
	}
}

// Where the handler may listen: under the host, loopback only, key or
// not; standalone, off loopback only with AuditApiKey.
func TestListenAddr(t *testing.T) {
	host := &config.Settings{Port: 7071}
	hostKey := &config.Settings{Port: 7071, APIKey: "k"}
	alone := &config.Settings{}
	aloneKey := &config.Settings{APIKey: "k"}
	for _, tt := range []struct {
		addr  string
		s     *config.Settings
		ok    bool
		names string
	}{
		{"127.0.0.1", host, true, ""},
		{"::1", hostKey, true, ""},
		{"127.0.0.2", hostKey, true, ""},
		{"localhost", host, true, ""},
		{"0.0.0.0", host, false, config.SettingCustomPort},
		{"0.0.0.0", hostKey, false, config.SettingCustomPort},
		{"10.1.2.3", hostKey, false, config.SettingCustomPort},
		{"", hostKey, false, config.SettingCustomPort},
		{"127.0.0.1", alone, true, ""},
		{"::1", alone, true, ""},
		{"[::1]", alone, true, ""},
		{"localhost", alone, true, ""},
		{"127.0.0.2", alone, true, ""},
		{"0.0.0.0", alone, false, config.SettingAPIKey},
		{"", alone, false, config.SettingAPIKey},
		{"10.1.2.3", alone, false, config.SettingAPIKey},
		{"::", alone, false, config.SettingAPIKey},
		{"0.0.0.0", aloneKey, true, ""},
		{"10.1.2.3", aloneKey, true, ""},
	} {
		err := checkListenAddr(tt.addr, tt.s)
		if (err == nil) != tt.ok {
			t.Errorf("checkListenAddr(%q, port %d, key %v) = %v", tt.addr, tt.s.Port, tt.s.APIKey != "", err)
		}
		if err != nil && !strings.Contains(err.Error(), tt.names) {
			t.Errorf("message %q does not name %s", err, tt.names)
		}
	}
}

// serve refuses an address off loopback before it listens: under the
// host even with AuditApiKey set, standalone without it.
func TestServeRefusesAddrOffLoopback(t *testing.T) {
	t.Setenv(config.SettingLogsStorage, "UseDevelopmentStorage=true")
	for _, tt := range []struct {
		name      string
		port, key string
		args      []string
		says      string
	}{
		{"host with key", "7071", "k", []string{"serve", "-addr", "0.0.0.0"}, "loopback only"},
		{"host without key", "7071", "", []string{"serve", "-addr", "10.1.2.3"}, "loopback only"},
		{"standalone without key", "", "", []string{"serve", "-port", "7071", "-addr", "0.0.0.0"}, "set " + config.SettingAPIKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(config.SettingCustomPort, tt.port)
			t.Setenv(config.SettingAPIKey, tt.key)
			var stderr strings.Builder
			if code := run(tt.args, nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.says) {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
		})
	}
}

// isJSONError checks that resp is status with {"error": …} saying says.
func isJSONError(t *testing.T, resp *http.Response, body []byte, status int, says string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q: %s", ct, body)
	}
	var shape map[string]any
	if err := json.Unmarshal(body, &shape); err != nil || len(shape) != 1 {
		t.Fatalf("body %s is not {\"error\": …}", body)
	}
	if msg, _ := shape["error"].(string); !strings.Contains(msg, says) {
		t.Fatalf("error %q, want it to say %q", msg, says)
	}
}

// Every answer that is not a success is {"error": …} with its status,
// wherever the request went; HEAD is a 405 on the API; every route refuses
// parameters it does not know, and none counts ?code= as one.
func TestErrorsOutsideTheAPI(t *testing.T) {
	ta := newTestApp(t, nil)
	routes := "GET /, POST /BlobTrigger, POST /EventGridTrigger, POST /CatchUp, GET /api/audit/events, GET /api/audit/stats, GET /api/audit/detections, GET /api/audit/status, GET /api/audit/openapi.json, GET /api/audit/vaults, GET /api/audit/alerts, GET /api/audit/ui, GET /api/audit/ui/app.js, GET /api/audit/ui/app.css"
	for _, tt := range []struct {
		method, path string
		status       int
		says, allow  string
	}{
		{"GET", "/api/", 404, "the handler serves " + routes, ""},
		{"GET", "/api", 404, `no such path "/api"`, ""},
		{"GET", "/nothing", 404, "GET /api/audit/status", ""},
		{"GET", "/api/audit/", 404, "GET /api/audit/status", ""},
		{"GET", "//api/audit/events", 404, "no such path", ""},
		{"GET", "/api/audit/x/../events", 404, "no such path", ""},
		{"POST", "/nothing", 404, "no such path", ""},
		{"GET", "/BlobTrigger", 405, "method GET is not allowed on /BlobTrigger: use POST", "POST"},
		{"PUT", "/CatchUp", 405, "use POST", "POST"},
		{"POST", "/", 405, "use GET", "GET"},
		{"DELETE", "/api/audit/status", 405, "use GET", "GET"},
		{"HEAD", "/api/audit/events?vault=kv1", 405, "", "GET"},
		{"HEAD", "/api/audit/openapi.json", 405, "", "GET"},
		{"HEAD", "/BlobTrigger", 405, "", "POST"},
		{"GET", "/?probe=1", 400, `unknown parameter "probe": GET / takes none`, ""},
		{"POST", "/BlobTrigger?name=x", 400, `unknown parameter "name": POST /BlobTrigger takes none`, ""},
		{"POST", "/CatchUp?retention=1", 400, `unknown parameter "retention"`, ""},
		{"GET", "/api/audit/status?vault=kv1", 400, `unknown parameter "vault": GET /api/audit/status takes none`, ""},
		{"GET", "/api/audit/openapi.json?format=yaml", 400, `unknown parameter "format"`, ""},
		{"GET", "/api/audit/status?%zz", 400, "not valid URL encoding", ""},
		{"GET", "/api/audit/ui?vault=kv1", 400, `unknown parameter "vault": GET /api/audit/ui takes none`, ""},
		{"GET", "/api/audit/ui/app.js?v=1", 400, `unknown parameter "v"`, ""},
		{"GET", "/api/audit/ui/", 404, "no such path", ""},
		{"GET", "/api/audit/ui/index.html", 404, "no such path", ""},
		{"HEAD", "/api/audit/ui", 405, "", "GET"},
		{"POST", "/api/audit/vaults", 405, "use GET", "GET"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			ta.t = t
			resp, body := ta.send(tt.method, tt.path, "{}", nil)
			if tt.method == "HEAD" {
				if resp.StatusCode != tt.status || len(body) != 0 || resp.Header.Get("Allow") != tt.allow {
					t.Fatalf("%d Allow %q %q", resp.StatusCode, resp.Header.Get("Allow"), body)
				}
				return
			}
			isJSONError(t, resp, body, tt.status, tt.says)
			if resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("Allow %q, want %q", resp.Header.Get("Allow"), tt.allow)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q", cc)
			}
		})
	}
	// ?code= is the function key, never an unknown parameter; HEAD on the
	// readiness probe answers as GET.
	for _, path := range []string{"/?code=k", "/api/audit/status?code=k", "/api/audit/openapi.json?code=k&code=j", "/api/audit/events?vault=kv1&c%6Fde=k", "/api/audit/ui?code=k", "/api/audit/ui/app.css?code=k"} {
		ta.t = t
		if resp, body := ta.send("GET", path, "", nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := ta.send("HEAD", "/", "", nil); resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD /: %d %q", resp.StatusCode, body)
	}
}

// rawExchange writes raw on a new connection to ta and reads the replies
// to n requests.
func (ta *testApp) rawExchange(raw string, n int) []*http.Response {
	ta.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ta.srv.URL, "http://"))
	if err != nil {
		ta.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails, it does not block the suite
	if _, err := io.WriteString(c, raw); err != nil {
		ta.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			ta.t.Fatalf("reply %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			ta.t.Fatalf("reply %d: %v", i, err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

// What net/http answers before any handler runs — a malformed request
// line, headers it cannot take — is JSON too, also after a good request on
// the same connection, whose answer is left as it was.
func TestMalformedRequestsAreJSON(t *testing.T) {
	ta := newTestApp(t, nil)
	bigHeader := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", http.DefaultMaxHeaderBytes+8192) + "\r\n\r\n"
	for _, tt := range []struct {
		name, raw string
		status    int
		says      string
	}{
		{"garbage request line", "GARBAGE\r\n\r\n", 400, "400 Bad Request"},
		{"bad version", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing required Host header"},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400, "400 Bad Request"},
		{"unknown transfer coding", "POST /CatchUp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Unsupported transfer encoding"},
		{"unsupported Expect", "GET / HTTP/1.1\r\nHost: x\r\nExpect: miracles\r\n\r\n", 417, "417 Expectation Failed"},
		{"header too large", bigHeader, 431, "431 Request Header Fields Too Large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ta.t = t
			resp := ta.rawExchange(tt.raw, 1)[0]
			body, _ := io.ReadAll(resp.Body)
			isJSONError(t, resp, body, tt.status, tt.says)
		})
	}
	t.Run("after a good request", func(t *testing.T) {
		ta.t = t
		replies := ta.rawExchange("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\nGARBAGE\r\n\r\n", 3)
		body, _ := io.ReadAll(replies[0].Body)
		if replies[0].StatusCode != 200 || string(body) != "{\"status\":\"ok\"}\n" {
			t.Fatalf("first reply %d %q", replies[0].StatusCode, body)
		}
		body, _ = io.ReadAll(replies[1].Body)
		isJSONError(t, replies[1], body, 404, "no such path")
		body, _ = io.ReadAll(replies[2].Body)
		isJSONError(t, replies[2], body, 400, "400 Bad Request")
	})
}

// Standalone without AuditApiKey (make run) the handler serves this
// machine alone, and a browser on it shows any site. A page that
// re-resolves its own name to 127.0.0.1 (DNS rebinding) sends its own Host:
// 421, and nothing of the index in the answer. A loopback Host, by name or
// address, with or without a port, is answered.
func TestLoopbackWithoutKeyAnswersOnlyLoopbackHosts(t *testing.T) {
	ta := fixtureApp(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ta.srv.URL, "http://"))
	const events = "/api/audit/events?vault=kv1&limit=5" + kv1Window
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:" + port, true},
		{"127.0.0.1", true},
		{"localhost:" + port, true},
		{"LocalHost", true},
		{"[::1]:" + port, true},
		{"[::1]", true},
		{"127.0.0.2:7071", true}, // loopback too; no page can be given that name
		{"localhost:8080", true}, // an ssh -L tunnel's port
		{"rebind.attacker.example:7071", false},
		{"rebind.attacker.example:" + port, false},
		{"rebind.attacker.example", false},
		{"localhost.attacker.example:" + port, false},
		{"127.0.0.1.nip.io:" + port, false},
		{"0.0.0.0:" + port, false},
		{"10.1.2.3:" + port, false},
		{"[::1]x", false},
		{"localhost:http", false},
	} {
		t.Run(tt.host, func(t *testing.T) {
			ta.t = t
			req, err := http.NewRequest("GET", ta.srv.URL+events, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.ok {
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"correlationId"`) {
					t.Fatalf("%d %s, want the events", resp.StatusCode, body)
				}
				return
			}
			isJSONError(t, resp, body, http.StatusMisdirectedRequest, "is not this machine")
			if strings.Contains(string(body), "kv1") || strings.Contains(string(body), "correlationId") {
				t.Fatalf("the refusal carries index data: %s", body)
			}
		})
	}
	// The host stand-in of HTTP/1.0 sends no Host at all.
	ta.t = t
	resp := ta.rawExchange("GET /api/audit/vaults HTTP/1.0\r\n\r\n", 1)[0]
	body, _ := io.ReadAll(resp.Body)
	isJSONError(t, resp, body, http.StatusMisdirectedRequest, "is not this machine")
}

// Standalone without AuditApiKey, another site's page cannot make the
// browser start work: a cross-site request is refused (403), and the
// trigger routes take only application/json, which no page can send
// across sites without a preflight the handler never grants (415). A
// blob waits in the container: nothing refused indexes it, the host's own
// timer invocation does.
func TestLoopbackWithoutKeyRefusesCrossSite(t *testing.T) {
	ta := newTestApp(t, nil)
	if err := ta.app.tables.Ensure(context.Background()); err != nil { // rows are counted below
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	name := ingesttest.BlobName("csrfvault", hour)
	data := ingesttest.Records("csrfvault", hour, 0, 5)
	ta.put(name, data)
	// What a browser sends for a form of another site posted here
	// (enctype text/plain), or for its fetch without CORS.
	form := http.Header{"Content-Type": {"text/plain"}, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}, "Origin": {"http://attacker.example"}}
	blobReq, err := hosttest.NewBlobRequest(context.Background(), ta.srv.URL, hosttest.BlobInvocation{
		Name: name, Container: ta.app.settings.LogsContainer, Content: bytes.NewReader(data), ContentLength: int64(len(data)),
	})
	if err != nil {
		t.Fatal(err)
	}
	invocation, _ := io.ReadAll(blobReq.Body)
	for _, tt := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		says                     string
	}{
		{"form to CatchUp", "POST", "/CatchUp", "{}", form, 403, "cross-site request"},
		{"form to BlobTrigger", "POST", "/BlobTrigger", string(invocation), form, 403, "cross-site request"},
		{"JSON from another site", "POST", "/CatchUp", "{}", http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}}, 403, "cross-site request"},
		{"text/plain from a browser without Sec-Fetch", "POST", "/CatchUp", "{}", http.Header{"Content-Type": {"text/plain"}}, 415, "takes Content-Type: application/json"},
		{"form-urlencoded", "POST", "/BlobTrigger", string(invocation), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 415, "not \"application/x-www-form-urlencoded\""},
		{"no Content-Type", "POST", "/CatchUp", "{}", nil, 415, "takes Content-Type: application/json"},
		{"a read from another site", "GET", "/api/audit/vaults", "", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, "cross-site request"},
		{"a link from another site", "GET", "/api/audit/ui", "", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}}, 403, "open the page by its URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ta.t = t
			resp, body := ta.send(tt.method, tt.path, tt.body, tt.header)
			isJSONError(t, resp, body, tt.status, tt.says)
		})
	}
	ta.t = t
	// The same site, the page's own requests and a typed URL are served.
	for _, site := range []string{"same-origin", "same-site", "none"} {
		if resp, body := ta.send("GET", "/api/audit/vaults", "", http.Header{"Sec-Fetch-Site": {site}}); resp.StatusCode != 200 {
			t.Errorf("Sec-Fetch-Site %s: %d %s", site, resp.StatusCode, body)
		}
	}
	// Nothing was started: no row, no vault registered.
	if n := ta.countRows(index.TableEvents); n != 0 {
		t.Fatalf("%d event rows after refused requests", n)
	}
	if status, body := ta.get("/api/audit/vaults"); status != 200 || fmt.Sprint(body["vaults"]) != "[]" {
		t.Fatalf("vaults after refused requests: %d %v", status, body)
	}
	// The host's invocation (application/json, no Sec-Fetch-Site) runs.
	if status, logs := ta.timer(); status != http.StatusOK || !strings.Contains(logs[0], "5 records indexed") {
		t.Fatalf("the host's timer: %d %q", status, logs)
	}
}

// Under the host and standalone with AuditApiKey the Host and
// Sec-Fetch-Site guards do not apply — the host forwards the caller's own
// Host (<app>.azurewebsites.net) and headers, and a key guards the rest —
// but the trigger routes take only application/json in every mode.
func TestHostAndKeyedModesTakeAnyHost(t *testing.T) {
	for _, m := range []struct {
		name string
		env  map[string]string
		key  http.Header
	}{
		{"host", map[string]string{config.SettingCustomPort: "7071"}, nil},
		{"standalone with key", map[string]string{config.SettingAPIKey: testKey}, http.Header{"X-Functions-Key": {testKey}}},
	} {
		t.Run(m.name, func(t *testing.T) {
			ta := newTestApp(t, m.env)
			forwarded := http.Header{"Sec-Fetch-Site": {"cross-site"}}
			maps.Copy(forwarded, m.key)
			req, err := http.NewRequest("GET", ta.srv.URL+"/api/audit/vaults", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = forwarded
			req.Host = "kvaudit-prod.azurewebsites.net"
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("a forwarded request: %d %s", resp.StatusCode, body)
			}
			text := http.Header{"Content-Type": {"text/plain"}}
			maps.Copy(text, m.key)
			resp, body = ta.send("POST", "/CatchUp", "{}", text)
			isJSONError(t, resp, body, http.StatusUnsupportedMediaType, "takes Content-Type: application/json")
			// The host's own invocation: application/json; charset=utf-8.
			host := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
			maps.Copy(host, m.key)
			if err := ta.app.tables.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			if resp, body := ta.send("POST", "/CatchUp", "{}", host); resp.StatusCode != 200 {
				t.Fatalf("the host's CatchUp: %d %s", resp.StatusCode, body)
			}
		})
	}
}
