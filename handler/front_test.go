package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
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
					resp, body := ta.send(rt.method, path, rt.body, k.header)
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
		replies := ta.rawExchange("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n", 3)
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
