package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kvaudit/kvaudit/internal/config"
)

// The alerts panel in a real browser (see browser_test.go): the alerts of
// the window, each with its delivery state as the webhook left it —
// delivered, retrying (the receiver answers 503), undelivered (it refuses
// with 400, which is final) — each linking to its events, and the logged
// values in them (a caller and an object named <img src=x onerror=…>)
// shown as characters.
func TestAlertsPanelInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := newBrowser(t, 2*time.Minute)
	cons := watchConsole(ctx)
	// The receiver answers by the secret the alert is about.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		switch {
		case bytes.Contains(b, []byte(`"object":"ok-secret"`)):
			w.WriteHeader(http.StatusOK)
		case bytes.Contains(b, []byte(`"object":"flaky-secret"`)):
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(hook.Close)
	ta := newTestApp(t, map[string]string{
		config.SettingAlertWebhookURL:    hook.URL + "/kvaudit",
		config.SettingAlertWebhookSecret: hookSecret,
	})
	ta.app.alerts.InvocationDelays = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}

	// Three deletes a few minutes ago, in one blob: three
	// sensitive-operation alerts, delivered by the invocation that
	// indexes them as far as the receiver lets it.
	now := time.Now().UTC()
	at := now.Add(-10 * time.Minute)
	var data []byte
	for i, d := range []struct{ caller, object string }{
		{"alice@contoso.com", "ok-secret"},
		{"bob@contoso.com", "flaky-secret"},
		{xss, xss},
	} {
		data = append(data, auditLine("alertvault", at.Add(time.Duration(i)*time.Second), 100+i, "SecretDelete", 200, d.caller, "10.4.0.1", d.object)...)
	}
	name := hourBlob("alertvault", at.Truncate(time.Hour))
	ta.put(name, data)
	if status, resp := ta.invoke(name, data, false, false); status != http.StatusOK ||
		!strings.Contains(strings.Join(resp.Logs, "\n"), "3 new alerts, 1 delivered, 1 retrying, 1 undelivered") {
		t.Fatalf("BlobTrigger: %d %q", status, resp.Logs)
	}

	u := &ui{t: t, ctx: ctx, dir: screenshotDir(t)}
	base := ta.srv.URL + "/api/audit/ui"
	u.open(base + "#vault=alertvault")
	u.waitFor(`document.querySelectorAll('#alerts li').length > 0`)
	type shown struct {
		State, StateText, Kind, Text, Link string
	}
	var items []shown
	u.eval(`[...document.querySelectorAll('#alerts li')].map(li => ({state: li.dataset.state, stateText: li.querySelector('.state').textContent,
		kind: li.dataset.kind, text: li.textContent, link: li.querySelector('a.events-link') ? li.querySelector('a.events-link').getAttribute('href') : ''}))`, &items)
	var api struct {
		Alerts []struct{ State, Kind, Title string }
	}
	ta.apiJSON("/api/audit/alerts?vault=alertvault", &api)
	if len(items) != 3 || len(api.Alerts) != 3 {
		t.Fatalf("the panel shows %d alerts, the API lists %d: want 3\n%+v", len(items), len(api.Alerts), items)
	}
	byState := map[string]shown{}
	for i, it := range items {
		// The page lists them as the API does (newest first).
		if it.State != api.Alerts[i].State || it.StateText != it.State || it.Kind != "sensitiveOperation" || !strings.Contains(it.Text, api.Alerts[i].Title) {
			t.Errorf("alert %d: %+v; the API says %+v", i, it, api.Alerts[i])
		}
		byState[it.State] = it
	}
	for state, want := range map[string]struct{ object, sink string }{
		"delivered":   {"ok-secret", "webhook: delivered"},
		"retrying":    {"flaky-secret", "webhook: retrying after 4 attempts (answered 503 Service Unavailable)"},
		"undelivered": {xss, "webhook: undelivered (answered 400 Bad Request)"},
	} {
		it, ok := byState[state]
		if !ok {
			t.Fatalf("no %s alert: %+v", state, items)
		}
		if !strings.Contains(it.Text, want.sink) {
			t.Errorf("%s alert says %q, want it to say %q", state, it.Text, want.sink)
		}
		// Each links to its events: the page's own view of the finding.
		frag, err := url.ParseQuery(strings.TrimPrefix(it.Link, "#"))
		if err != nil || !strings.HasPrefix(it.Link, "#") || frag.Get("vault") != "alertvault" || frag.Get("object") != want.object ||
			frag.Get("operation") != "SecretDelete" || frag.Get("window") != "custom" {
			t.Errorf("%s alert links to %q", state, it.Link)
		}
	}
	// The markup is characters, in the title as in the finding.
	var imgs int
	u.eval(`document.querySelectorAll('img').length`, &imgs)
	if imgs != 0 || strings.Count(byState["undelivered"].Text, xss) < 2 {
		t.Fatalf("%d img elements; the undelivered alert reads %q, want the caller and object %s as text", imgs, byState["undelivered"].Text, xss)
	}
	u.screenshot("alerts")

	// Its link opens the events of the finding: the one delete, with the
	// markup caller and object as text.
	u.after(chromedp.Click(chromedp.CSS(`#alerts li[data-state="undelivered"] a.events-link`)))
	var ev struct {
		Objects, Callers, Ops []string
		Imgs                  int
	}
	u.eval(`({objects: [...document.querySelectorAll('#events td.object')].map(td => td.textContent),
		callers: [...document.querySelectorAll('#events td.caller')].map(td => td.textContent),
		ops: [...document.querySelectorAll('#events tbody tr[data-key] td:nth-child(3)')].map(td => td.textContent),
		imgs: document.querySelectorAll('img').length})`, &ev)
	if len(ev.Objects) != 1 || ev.Objects[0] != xss || !slices.Equal(ev.Callers, []string{xss}) || !slices.Equal(ev.Ops, []string{"SecretDelete"}) || ev.Imgs != 0 {
		t.Fatalf("the undelivered alert's events: %+v, want the one delete of %s by %s as text", ev, xss, xss)
	}
	u.screenshot("alert-events")
	cons.check(t)
}
