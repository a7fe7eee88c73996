package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kvaudit/kvaudit/internal/identitytest"
	"github.com/kvaudit/kvaudit/internal/query"
)

// hostile is a finding whose every logged value tries something:
// markdown links, HTML, overlong text, control characters.
func hostile() *Alert {
	long := strings.Repeat("A", 5000)
	f := query.Finding{
		Kind: query.KindSensitiveOperation, Caller: "[click me](https://evil.example/phish)", IP: "203.0.113.9",
		Operation: "SecretDelete", Object: "<img src=x onerror=alert(1)>**bold**" + long,
		Count: 3, First: "2026-11-20T09:00:00.0000000Z", Last: "2026-11-20T09:05:00.0000000Z",
		ClientInfos: []query.Group{{Key: "curl/8 \u0007" + long, Count: 3}},
	}
	return newAlert(f, "kv1", "2026-11-20", SeverityHigh, "https://app.example/api/audit/ui", time.Now())
}

func loadSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/adaptive-card-1.4.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("http://adaptivecards.io/schemas/adaptive-card.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("http://adaptivecards.io/schemas/adaptive-card.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The card validates against the schema of the version it declares, for
// every kind, and the schema does refuse what is not a card.
func TestTeamsCardValidatesAgainstItsSchema(t *testing.T) {
	schema := loadSchema(t)
	validate := func(card any) error {
		b, _ := json.Marshal(card)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return schema.Validate(v)
	}
	alerts := []*Alert{hostile()}
	for _, kind := range query.Kinds {
		f := query.Finding{Kind: kind, Caller: "oid-1", IP: "192.0.2.1", Count: 30, First: "2026-11-20T09:00:00Z", Last: "2026-11-20T10:00:00Z",
			Objects: []query.Group{{Key: "a", Count: 1}, {Key: "b", Count: 1}, {Key: "c", Count: 1}, {Key: "d", Count: 1}}}
		if kind == query.KindAccessAnomaly {
			f.Anomaly = &query.AnomalyDetail{Series: query.SeriesHour, Start: "2026-11-20T09:00:00Z", Baseline: 5, Scale: 2.2, Score: 9}
		}
		alerts = append(alerts, newAlert(f, "kv1", "2026-11-20", SeverityLow, "", time.Now()))
	}
	for _, a := range alerts {
		card := Card(a)
		if card["version"] != "1.4" {
			t.Fatalf("declares %v", card["version"])
		}
		if err := validate(card); err != nil {
			t.Fatalf("%s card: %v", a.Kind, err)
		}
		b, _ := json.Marshal(TeamsMessage(a))
		if len(b) > 28_000 {
			t.Fatalf("%s message is %d bytes: Teams refuses cards past 28 KB", a.Kind, len(b))
		}
	}
	bad := Card(alerts[1])
	bad["body"] = []any{map[string]any{"type": "TextBlock"}} // text is required
	if err := validate(bad); err == nil {
		t.Fatal("the schema accepts a TextBlock without text: the check checks nothing")
	}
}

// Logged values reach the card only as TextRuns, which Adaptive Cards do
// not read as markdown.
func TestTeamsCardLoggedTextIsNotMarkdown(t *testing.T) {
	a := hostile()
	card := Card(a)
	var walk func(v any, parent string)
	found := false
	walk = func(v any, parent string) {
		switch x := v.(type) {
		case map[string]any:
			typ, _ := x["type"].(string)
			if s, ok := x["text"].(string); ok && strings.Contains(s, "evil.example") {
				found = true
				if typ != "TextRun" {
					t.Fatalf("logged text in a %s (markdown): %q", typ, s)
				}
			}
			for _, c := range x {
				walk(c, typ)
			}
		case []any:
			for _, c := range x {
				walk(c, parent)
			}
		}
	}
	b, _ := json.Marshal(card)
	var generic any
	_ = json.Unmarshal(b, &generic)
	walk(generic, "")
	if !found {
		t.Fatal("the caller is not on the card")
	}
	if strings.Contains(string(b), strings.Repeat("A", maxText)) {
		t.Fatal("an overlong logged value was not cut")
	}
}

// The Teams sink posts the message to the Workflows URL.
func TestTeamsSinkPosts(t *testing.T) {
	r := newReceiver(t, nil)
	s := NewTeams(r.URL + "/workflows/abc/triggers/manual/paths/invoke?sig=secret")
	if err := s.Send(context.Background(), hostile(), time.Now()); err != nil {
		t.Fatal(err)
	}
	ds := r.deliveries()
	var msg struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string         `json:"contentType"`
			Content     map[string]any `json:"content"`
		} `json:"attachments"`
	}
	if len(ds) != 1 || json.Unmarshal(ds[0].body, &msg) != nil || msg.Type != "message" || len(msg.Attachments) != 1 ||
		msg.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" || msg.Attachments[0].Content["type"] != "AdaptiveCard" {
		t.Fatalf("%s", ds[0].body)
	}
	if s.Target() != r.URL {
		t.Fatalf("target %q shows more than scheme and host", s.Target())
	}
}

// eventGridReceiver plays an Event Grid topic: CloudEvents batches only,
// with a bearer token the identity endpoint handed out for Event Grid.
type eventGridReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []map[string]any
	tokens int
}

func newEventGridReceiver(t *testing.T, id *identitytest.Endpoint) *eventGridReceiver {
	g := &eventGridReceiver{}
	g.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || id.Verify(tok, identitytest.EventGrid) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/api/events" || r.URL.Query().Get("api-version") != "2018-01-01" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents-batch+json") {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var batch []map[string]any
		if err := json.Unmarshal(b, &batch); err != nil || len(batch) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, ev := range batch {
			for _, attr := range []string{"id", "source", "specversion", "type"} {
				if s, _ := ev[attr].(string); s == "" {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
			}
		}
		g.mu.Lock()
		g.events = append(g.events, batch...)
		g.tokens++
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

// The Event Grid sink publishes a CloudEvents batch with a Microsoft
// Entra token of the app's managed identity (the App Service identity
// endpoint azidentity calls, played by identitytest).
func TestEventGridSinkPublishesWithIdentity(t *testing.T) {
	id := identitytest.Start(t)
	for _, kv := range id.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	g := newEventGridReceiver(t, id)
	cred, err := EventGridCredential(id.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewEventGrid(g.URL+"/api/events", cred, g.Client())
	if err != nil {
		t.Fatal(err)
	}
	a := hostile()
	if err := s.Send(context.Background(), a, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(g.events) != 1 || g.events[0]["id"] != a.ID || g.events[0]["type"] != EventTypePrefix+a.Kind || g.events[0]["specversion"] != "1.0" {
		t.Fatalf("%v", g.events)
	}
	var sawEventGrid bool
	for _, r := range id.Requests() {
		sawEventGrid = sawEventGrid || r.Resource == identitytest.EventGrid && r.ClientID == id.ClientID && r.Status == 200
	}
	if !sawEventGrid {
		t.Fatalf("token requests %+v", id.Requests())
	}

	// An identity that is not the app's gets no token: a failure to retry,
	// naming the cause, not a delivery.
	other, _ := EventGridCredential("00000000-0000-0000-0000-000000000000")
	s2, _ := NewEventGrid(g.URL+"/api/events", other, g.Client())
	err = s2.Send(context.Background(), a, time.Now())
	var se *SendError
	if err == nil || !errorsAs(err, &se) || se.Permanent || !strings.Contains(se.Reason, "no Microsoft Entra token") {
		t.Fatalf("%v", err)
	}
	if _, err := NewEventGrid("http://topic.example/api/events", cred, nil); err == nil {
		t.Fatal("a plain-HTTP topic endpoint was accepted: the token would travel in clear")
	}
}

func errorsAs(err error, se **SendError) bool {
	e, ok := err.(*SendError)
	if ok {
		*se = e
	}
	return ok
}

func TestSignVerifiesWithSpecCheck(t *testing.T) {
	// A secret, id, timestamp and body of our own, checked by the
	// spec-derived verifier (and a flipped byte refused).
	key, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"a":1}`)
	now := time.Now()
	h := http.Header{}
	h.Set("webhook-id", "kva_1")
	h.Set("webhook-timestamp", strconvItoa(now.Unix()))
	h.Set("webhook-signature", "v1,bm90IGl0 "+Sign(key, "kva_1", now.Unix(), body))
	if err := verifyStandardWebhook(testSecret, h, body, now); err != nil {
		t.Fatal(err)
	}
	if err := verifyStandardWebhook(testSecret, h, []byte(`{"a":2}`), now); err == nil {
		t.Fatal("a changed body verifies")
	}
	if err := verifyStandardWebhook(testSecret, h, body, now.Add(10*time.Minute)); err == nil {
		t.Fatal("an old timestamp verifies")
	}
	for _, bad := range []string{"", "whsec_", "hunter2xyz", "whsec_" + "c2hvcnQ=", "whsec_!!!!"} {
		if _, err := ParseSecret(bad); err == nil || strings.Contains(err.Error(), bad) && bad != "" {
			t.Errorf("ParseSecret(%q): %v", bad, err)
		}
	}
}

func strconvItoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
