package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// testDay is the day the fixtures happen on: yesterday, so that retries
// (which look at the last days' alerts) find them.
var testDay = utcDay(time.Now()).Add(-24 * time.Hour)

// rec is one audit record of a fixture.
type rec struct {
	at     time.Duration // after testDay
	vault  string
	op     string // default SecretGet
	status int    // default 200
	oid    string
	appid  string
	ip     string
	object string
	tls    string // properties.tlsVersion, default TLS1_2
	dur    int    // durationMs, default 9
}

func (r rec) line(i int) []byte {
	if r.op == "" {
		r.op = "SecretGet"
	}
	if r.status == 0 {
		r.status = 200
	}
	if r.ip == "" {
		r.ip = "192.0.2.1"
	}
	if r.tls == "" {
		r.tls = "TLS1_2"
	}
	if r.dur == 0 {
		r.dur = 9
	}
	var claims []string
	if r.oid != "" {
		claims = append(claims, fmt.Sprintf(`"oid":%q`, r.oid))
	}
	if r.appid != "" {
		claims = append(claims, fmt.Sprintf(`"appid":%q`, r.appid))
	}
	obj := ""
	if r.object != "" {
		obj = fmt.Sprintf(`,"id":"https://%s.vault.azure.net/secrets/%s/01","requestUri":"https://%s.vault.azure.net/secrets/%s?api-version=7.4"`, r.vault, r.object, r.vault, r.object)
	}
	sig := map[int]string{200: "OK", 403: "Forbidden", 401: "Unauthorized"}[r.status]
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":%q,"operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":%q,"durationMs":"%d","callerIpAddress":%q,"correlationId":"c-%06d","identity":{"claim":{%s}},"properties":{"httpStatusCode":%d,"clientInfo":"test","tlsVersion":%q%s}}`+"\n",
		parse.FormatTime(testDay.Add(r.at)), strings.ToUpper(r.vault), r.op, sig, r.dur, r.ip, i, strings.Join(claims, ","), r.status, r.tls, obj)
}

// env is a private index in the shared Azurite, loaded through ingest.
type env struct {
	t  testing.TB
	ix *ingesttest.Env
	q  *query.Querier
}

func newEnv(t testing.TB) *env {
	ix := ingesttest.New(t)
	return &env{t: t, ix: ix, q: &query.Querier{Tables: ix.Tables}}
}

// load appends recs to their vaults' blobs (the record's hour) and
// ingests them; it returns the blob names.
func (e *env) load(base int, recs ...rec) []string {
	e.t.Helper()
	blobs := map[string][]byte{}
	var names []string
	for i, r := range recs {
		name := ingesttest.BlobName(r.vault, testDay.Add(r.at).Truncate(time.Hour))
		if _, ok := blobs[name]; !ok {
			names = append(names, name)
		}
		blobs[name] = append(blobs[name], r.line(base+i)...)
	}
	for _, name := range names {
		exists := true
		if _, err := e.ix.Container.NewBlobClient(name).GetProperties(context.Background(), nil); err != nil {
			exists = false
		}
		e.ix.Append(name, !exists, blobs[name])
		e.ix.Ingest(name)
	}
	return names
}

// engine is an Engine over e's index with sinks, quick delays and a
// quiet log.
func (e *env) engine(tuning string, sinks ...Sink) *Engine {
	e.t.Helper()
	tu, err := ParseTuning(tuning)
	if err != nil {
		e.t.Fatal(err)
	}
	return &Engine{
		Querier: e.q, Store: NewStore(e.ix.Tables), Sinks: sinks, Tuning: tu,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), PageURL: "https://kv.example/api/audit/ui",
		InvocationDelays: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		LaterDelays:      []time.Duration{time.Minute},
	}
}

// massAndDelete is a day with one mass retrieval (30 gets by mallory) and
// one sensitive operation (alice deletes a secret).
func massAndDelete(vault string) []rec {
	var rs []rec
	for i := 0; i < 30; i++ {
		rs = append(rs, rec{at: 9*time.Hour + time.Duration(i)*time.Second, vault: vault, oid: "mallory-oid", object: fmt.Sprintf("s%d", i%5)})
	}
	rs = append(rs, rec{at: 9*time.Hour + 40*time.Minute, vault: vault, op: "SecretDelete", oid: "alice-oid", object: "old"})
	return rs
}

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is a local HTTP endpoint that records what it gets and
// answers as answer says (200 when nil).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) int // n: deliveries so far, this one included
}

func newReceiver(t *testing.T, answer func(n int, d delivery) int) *receiver {
	r := &receiver{answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	d := delivery{header: req.Header.Clone(), body: b}
	r.mu.Lock()
	r.got = append(r.got, d)
	n := len(r.got)
	r.mu.Unlock()
	status := 200
	if r.answer != nil {
		status = r.answer(n, d)
	}
	if status < 0 { // hang until the client gives up
		select {
		case <-req.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	}
	w.WriteHeader(status)
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// testSecret is a Standard Webhooks secret: whsec_ and 32 bytes.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// verifyStandardWebhook checks a delivery as a Standard Webhooks receiver
// does, written from the specification (spec/standard-webhooks.md,
// "Verifying signatures"), not from the sender's code: the three headers
// present, the timestamp within five minutes of now, and one of the
// space-delimited "v1,<base64>" signatures equal, in constant time, to
// HMAC-SHA256 under the base64-decoded part of the whsec_ secret of
// "<webhook-id>.<webhook-timestamp>.<body>".
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing webhook headers: id %q timestamp %q signature %q", id, ts, sigs)
	}
	if strings.Contains(id, ".") {
		return fmt.Errorf("webhook-id %q holds a full stop", id)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %s from now", ts, d)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature verifies")
}

// checkCloudEvent checks a structured-mode CloudEvents 1.0 JSON event
// (cloudevents/spec: spec.md "Required Attributes", json-format.md) and
// returns it.
func checkCloudEvent(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for _, attr := range []string{"id", "source", "specversion", "type"} {
		s, ok := ev[attr].(string)
		if !ok || s == "" {
			t.Fatalf("required attribute %s missing or empty: %s", attr, b)
		}
	}
	if ev["specversion"] != "1.0" {
		t.Fatalf("specversion %v", ev["specversion"])
	}
	if tm, ok := ev["time"].(string); ok {
		if _, err := time.Parse(time.RFC3339, tm); err != nil {
			t.Fatalf("time %q is not RFC 3339", tm)
		}
	}
	if _, ok := ev["data"].(map[string]any); !ok {
		t.Fatalf("no data object: %s", b)
	}
	return ev
}
