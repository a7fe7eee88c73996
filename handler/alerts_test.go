package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

var hookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("kvaudit-handler-test-secret-32by"))

// hookReceiver counts deliveries per webhook-id; hang makes it never
// answer.
type hookReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	ids  map[string]int
	hang bool
}

func newHookReceiver(t *testing.T, hang bool) *hookReceiver {
	h := &hookReceiver{ids: map[string]int{}, hang: hang}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.ids[r.Header.Get("webhook-id")]++
		h.mu.Unlock()
		if h.hang {
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.ids {
		out[k] = v
	}
	return out
}

// massBlob is a blob of the current hour in which one caller reads 30
// secrets: one mass-retrieval alert.
func massBlob(vault string) (string, []byte) {
	hour := time.Now().UTC().Truncate(time.Hour)
	var data []byte
	for i := 0; i < 30; i++ {
		data = append(data, ingesttest.Record(vault, hour.Add(time.Duration(i)*time.Second), i*5)...) // i*5: always oid-0
	}
	return ingesttest.BlobName(vault, hour), data
}

// Through the handler as the host drives it: a BlobTrigger that indexes a
// mass retrieval alerts once; the host's re-delivery, CatchUp ticks and
// four racing invocations of another blob never alert twice; the alerts
// API and status show the delivery.
func TestAlertsAfterIndexingExactlyOnce(t *testing.T) {
	hook := newHookReceiver(t, false)
	ta := newTestApp(t, map[string]string{
		config.SettingAlertWebhookURL:    hook.URL + "/kvaudit?token=hunter2",
		config.SettingAlertWebhookSecret: hookSecret,
		config.SettingAlertPageURL:       "https://audit.example/api/audit/ui",
	})
	name, data := massBlob("alertvault1")
	ta.put(name, data)
	status, resp := ta.invoke(name, data, false, false)
	if status != http.StatusOK || !strings.Contains(strings.Join(resp.Logs, "\n"), "1 new alerts, 1 delivered") {
		t.Fatalf("%d %q", status, resp.Logs)
	}
	if c := hook.counts(); len(c) != 1 {
		t.Fatalf("deliveries %v", c)
	}
	ta.invoke(name, data, false, false) // the host delivers the blob again
	if status, logs := ta.timer(); status != http.StatusOK {
		t.Fatalf("timer %d %q", status, logs)
	}
	ta.timer()

	name2, data2 := massBlob("alertvault2")
	ta.put(name2, data2)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ta.invoke(name2, data2, false, false)
		}()
	}
	wg.Wait()
	ta.timer()
	c := hook.counts()
	if len(c) != 2 {
		t.Fatalf("deliveries %v, want two alerts", c)
	}
	for id, n := range c {
		if n != 1 {
			t.Fatalf("alert %s delivered %d times", id, n)
		}
	}

	code, body := ta.get("/api/audit/alerts")
	alerts, _ := body["alerts"].([]any)
	if code != 200 || len(alerts) != 2 {
		t.Fatalf("%d %v", code, body)
	}
	for _, x := range alerts {
		a := x.(map[string]any)
		if a["state"] != "delivered" || a["kind"] != "massSecretRetrieval" || c[a["id"].(string)] != 1 ||
			!strings.HasPrefix(a["link"].(string), "https://audit.example/api/audit/ui#") {
			t.Fatalf("%v", a)
		}
	}
	if code, body := ta.get("/api/audit/alerts?vault=alertvault1&state=delivered"); code != 200 || len(body["alerts"].([]any)) != 1 {
		t.Fatalf("%d %v", code, body)
	}
	for _, bad := range []string{"?vault=x'y", "?state=lost", "?from=yesterday", "?level=1", "?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"} {
		if code, body := ta.get("/api/audit/alerts" + bad); code != 400 || body["error"] == nil {
			t.Errorf("%s: %d %v", bad, code, body)
		}
	}

	resp2, err := http.Get(ta.srv.URL + "/api/audit/status")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte("/kvaudit?")) || bytes.Contains(raw, []byte("whsec_")) {
		t.Fatalf("status shows a secret: %s", raw)
	}
	if !bytes.Contains(raw, []byte(`"target":"`+hook.URL+`"`)) {
		t.Fatalf("status does not say where alerts go: %s", raw)
	}
}

// syncBuffer is a log sink safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A receiver that never answers: the alert ends undelivered, in status,
// in the alerts API and in the structured log — not dropped.
func TestUndeliveredAlertInStatus(t *testing.T) {
	hook := newHookReceiver(t, true)
	ta := newTestApp(t, map[string]string{
		config.SettingAlertWebhookURL:    hook.URL + "/kvaudit",
		config.SettingAlertWebhookSecret: hookSecret,
		config.SettingAlertTuning:        `{"delivery":{"attempts":2,"timeoutSeconds":1}}`,
	})
	var logs syncBuffer
	ta.app.alerts.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	ta.app.alerts.InvocationDelays = []time.Duration{100 * time.Millisecond}
	name, data := massBlob("alertvault3")
	ta.put(name, data)
	if status, resp := ta.invoke(name, data, false, false); status != 200 || !strings.Contains(strings.Join(resp.Logs, "\n"), "1 undelivered") {
		t.Fatalf("%d %q", status, resp.Logs)
	}
	code, body := ta.get("/api/audit/status")
	al, _ := body["alerts"].(map[string]any)
	if code != 200 || al == nil || al["undelivered"] != float64(1) {
		t.Fatalf("%d %v", code, body["alerts"])
	}
	nd := al["notDelivered"].([]any)
	sinks := nd[0].(map[string]any)["sinks"].(map[string]any)["webhook"].(map[string]any)
	if sinks["state"] != "undelivered" || sinks["attempts"] != float64(2) || sinks["error"] != "no answer in time" {
		t.Fatalf("%v", sinks)
	}
	var rec map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"msg":"alert undelivered"`) {
			_ = json.Unmarshal([]byte(line), &rec)
		}
	}
	if rec == nil || rec["level"] != "ERROR" || rec["kind"] != "massSecretRetrieval" || rec["reason"] != "no answer in time" {
		t.Fatalf("structured log: %s", logs.String())
	}
	if strings.Contains(logs.String(), "oid-0") {
		t.Fatalf("the log names the caller: %s", logs.String())
	}
	if c := hook.counts(); len(c) != 1 {
		t.Fatalf("%v", c)
	}
}
