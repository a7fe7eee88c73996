package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/kvaudit/kvaudit/internal/config"
)

// The web page in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol against the handler and Azurite, with generated
// records of the last 30 hours and the real samples moved to the last
// hour. Screenshots of each view go to handler/testdata/screenshots/
// (KVAUDIT_SCREENSHOTS to change it); KVAUDIT_UPDATE_SCREENSHOT=1 also
// writes the overview to docs/ui.png, the README's image.

const xss = `<img src=x onerror=alert(1)>`

// browserPath is the Chromium to drive. Where there is none, CI fails (a
// test that skips there would pass without testing anything) and a
// developer's machine skips, naming the install command.
func browserPath(t *testing.T) string {
	t.Helper()
	p, missing, fail := findBrowser(os.Getenv, exec.LookPath)
	switch {
	case missing == "":
		return p
	case fail:
		t.Fatal(missing)
	default:
		t.Skip(missing)
	}
	return ""
}

// findBrowser looks for Chromium: KVAUDIT_CHROMIUM, else chromium or
// chromium-browser on the PATH. When there is none, missing says so and
// how to install it, and fail is set where a skip is not allowed: CI
// (CI set) or KVAUDIT_REQUIRE_BROWSER.
func findBrowser(getenv func(string) string, lookPath func(string) (string, error)) (path, missing string, fail bool) {
	if p := getenv("KVAUDIT_CHROMIUM"); p != "" {
		return p, "", false
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := lookPath(name); err == nil {
			return p, "", false
		}
	}
	return "", "Chromium is not installed: the web page's browser tests need it (apt-get install -y --no-install-recommends chromium; .ci/run and make browser install it)",
		getenv("CI") != "" || getenv("KVAUDIT_REQUIRE_BROWSER") != ""
}

// Without Chromium, CI fails the browser test; elsewhere it skips.
func TestFindBrowserFailsInCI(t *testing.T) {
	none := func(string) (string, error) { return "", exec.ErrNotFound }
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, tt := range []struct {
		env        map[string]string
		path, fail bool
	}{
		{map[string]string{}, false, false},
		{map[string]string{"CI": "true"}, false, true},
		{map[string]string{"KVAUDIT_REQUIRE_BROWSER": "1"}, false, true},
		{map[string]string{"CI": "true", "KVAUDIT_CHROMIUM": "/opt/chromium"}, true, false},
	} {
		p, missing, fail := findBrowser(env(tt.env), none)
		if (p != "") != tt.path || fail != tt.fail || (p == "") != strings.Contains(missing, "apt-get install -y --no-install-recommends chromium") {
			t.Errorf("%v: path %q, missing %q, fail %v", tt.env, p, missing, fail)
		}
	}
	if p, missing, _ := findBrowser(env(nil), func(name string) (string, error) { return "/usr/bin/" + name, nil }); p != "/usr/bin/chromium" || missing != "" {
		t.Errorf("on the PATH: %q %q", p, missing)
	}
}

// newBrowser starts a headless Chromium that reaches nothing but
// loopback, and returns a tab's context, bounded by timeout.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(browserPath(t)),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Headless,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Names resolve to nothing and no proxy is asked: only loopback
		// reaches anything — by address, as localhost, and as the two
		// names of another site the tests play (see attackerNames).
		chromedp.Flag("host-resolver-rules", "MAP "+attackerSite+" 127.0.0.1, MAP "+reboundSite+" 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"),
		chromedp.Flag("proxy-server", "direct://"),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil { // start it now: a failure here is the browser's
		t.Fatalf("starting %s: %v", browserPath(t), err)
	}
	return ctx
}

// attackerNames: the browser resolves both to 127.0.0.1. attackerSite is
// another site's server; reboundSite is a name whose DNS an attacker
// points at 127.0.0.1 once its page is loaded (DNS rebinding), so that its
// page reads what 127.0.0.1 answers as its own origin.
const (
	attackerSite = "attacker.example"
	reboundSite  = "rebind.attacker.example"
)

// console collects what the page writes to the console (errors, uncaught
// exceptions, CSP violations, failed loads) and any dialog it opens.
type console struct {
	mu   sync.Mutex
	msgs []string
}

func watchConsole(ctx context.Context) *console {
	c := &console{}
	_ = chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			c.add("dialog opened: " + d.Message)
		}
	})
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				c.add(m.String())
			}
		}
	}()
	return c
}

func (c *console) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, s)
}

func (c *console) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		t.Errorf("console: %s", m)
	}
	c.msgs = nil
}

// ui drives one tab.
type ui struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots
}

func (u *ui) do(actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	if err := chromedp.Do(u.ctx, actions...); err != nil {
		u.t.Fatal(err)
	}
}

// eval evaluates expr in the page into out (JSON).
func (u *ui) eval(expr string, out any) {
	u.t.Helper()
	raw, err := chromedp.Run(u.ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		u.t.Fatalf("%s: %v", expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		u.t.Fatalf("%s: %v in %s", expr, err, raw)
	}
}

// waitFor evaluates cond until it is true, for at most 20 s.
func (u *ui) waitFor(cond string) {
	u.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		u.eval("!!("+cond+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			u.eval(`document.querySelector('main').innerText.slice(0, 2000)`, &html)
			u.t.Fatalf("waited 20 s for %s; the page says:\n%s", cond, html)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ready returns the page's render counter: it changes when a view has
// been drawn completely.
func (u *ui) ready() string {
	var s string
	u.eval(`document.body.getAttribute('data-ready') || ''`, &s)
	return s
}

// after runs action and waits for the view it leads to.
func (u *ui) after(action chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	before := u.ready()
	u.do(action)
	u.waitFor(fmt.Sprintf("document.body.getAttribute('data-ready') && document.body.getAttribute('data-ready') !== %q", before))
}

func (u *ui) open(pageURL string) {
	u.t.Helper()
	// A new document each time: a change of fragment alone would not
	// reload the page.
	u.do(chromedp.Navigate("about:blank"), chromedp.Navigate(pageURL))
	u.waitFor(`document.body.getAttribute('data-ready') || !document.getElementById('empty').hidden`)
}

// hasTab reports whether the browser has a page open at a URL starting
// with prefix.
func (u *ui) hasTab(prefix string) bool {
	u.t.Helper()
	targets, err := chromedp.Targets(u.ctx)
	if err != nil {
		u.t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Type == "page" && strings.HasPrefix(tg.URL, prefix) {
			return true
		}
	}
	return false
}

// download clicks the link at css and returns the file the browser saved.
func (u *ui) download(css string) []byte {
	u.t.Helper()
	dir := u.t.TempDir()
	enabled := true
	progress := chromedp.BrowserEvents(u.ctx, browser.DownloadProgress)
	u.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &enabled,
		})
		return err
	}), chromedp.Click(chromedp.CSS(css)))
	var file string
	for ev, err := range progress {
		if err != nil {
			u.t.Fatal(err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			file = filepath.Join(dir, ev.GUID)
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			u.t.Fatal("download canceled")
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		u.t.Fatal(err)
	}
	return got
}

func (u *ui) screenshot(name string) {
	u.t.Helper()
	png, err := chromedp.Run(u.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		u.t.Fatal(err)
	}
	p := filepath.Join(u.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.t.Fatal(err)
	}
	u.t.Logf("screenshot: %s", p)
}

// screenshotViewport saves what the screen shows.
func (u *ui) screenshotViewport(name string) {
	u.t.Helper()
	png, err := chromedp.Run(u.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.t.Fatal(err)
	}
	p := filepath.Join(u.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.t.Fatal(err)
	}
	u.t.Logf("screenshot: %s", p)
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("KVAUDIT_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// browserFixture indexes, through the BlobTrigger, vault webvault: 7
// records an hour over the last 30 hours (callers, IPs, objects, 2xx, 4xx
// and 5xx), one whose UPN and object name are markup; vault othervault:
// a few records of the same callers; and the real samples, moved to the
// last hour. It returns the time the data ends.
func (ta *testApp) browserFixture() time.Time {
	ta.t.Helper()
	now := time.Now().UTC()
	blobs := map[string][]byte{}
	callers := []string{"alice@contoso.com", "bob@contoso.com", "carol@contoso.com"}
	i := 0
	for h := 30; h >= 0; h-- {
		hour := now.Truncate(time.Hour).Add(-time.Duration(h) * time.Hour)
		for k := 0; k < 7; k++ {
			t := hour.Add(time.Duration(k)*8*time.Minute + time.Duration(i)*time.Millisecond)
			if !t.Before(now) {
				break
			}
			op, status := "SecretGet", 200
			switch {
			case k == 3:
				op, status = "SecretList", 403
			case k == 5 && h%3 == 0:
				op, status = "KeySign", 500
			case k == 6 && h%5 == 0:
				op, status = "SecretDelete", 200
			}
			caller := callers[(i+h)%3]
			if k < 3 {
				caller = callers[0] // alice is the top caller, over two pages
			}
			name := hourBlob("webvault", hour)
			blobs[name] = append(blobs[name], auditLine("webvault", t, i, op, status, caller, fmt.Sprintf("10.2.0.%d", i%4), fmt.Sprintf("app-secret-%d", i%6))...)
			i++
		}
	}
	xt := now.Add(-90 * time.Minute)
	name := hourBlob("webvault", xt.Truncate(time.Hour))
	blobs[name] = append(blobs[name], auditLine("webvault", xt, 9999, "SecretGet", 200, xss, "10.9.9.9", xss)...)
	for k := 0; k < 4; k++ {
		t := now.Add(-time.Duration(k+1) * 20 * time.Minute)
		name := hourBlob("othervault", t.Truncate(time.Hour))
		blobs[name] = append(blobs[name], auditLine("othervault", t, 5000+k, "SecretGet", 200, callers[0], "10.3.0.1", "shared")...)
	}
	for name, data := range blobs {
		ta.put(name, data)
	}
	// The samples, each a minute apart, ending a minute ago.
	lines := strings.SplitAfter(strings.TrimSpace(string(samples(ta.t))), "\n")
	stamp := regexp.MustCompile(`"time":"[^"]*"`)
	start := now.Add(-time.Duration(len(lines)+1) * time.Minute)
	var sample []byte
	for k, line := range lines {
		t := start.Add(time.Duration(k) * time.Minute)
		sample = append(sample, stamp.ReplaceAllString(strings.TrimSpace(line), `"time":"`+t.Format("2006-01-02T15:04:05.0000000Z")+`"`)...)
		sample = append(sample, '\n')
	}
	sampleName := strings.Replace(sampleBlob, "y=2024/m=04/d=03/h=14", start.Format("y=2006/m=01/d=02/h=15"), 1)
	ta.put(sampleName, sample)
	blobs[sampleName] = sample
	for name, data := range blobs {
		if status, resp := ta.invoke(name, data, true, false); status != http.StatusOK {
			ta.t.Fatalf("BlobTrigger %s: %d %q", name, status, resp.Logs)
		}
	}
	return now
}

// apiJSON gets an API path from the handler directly.
func (ta *testApp) apiJSON(path string, out any) {
	ta.t.Helper()
	resp, body := ta.do("GET", path, nil)
	if resp.StatusCode != 200 {
		ta.t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		ta.t.Fatalf("%s: %v", path, err)
	}
}

type statsAnswer struct {
	Groups []struct {
		Key   string
		Count int
	}
}

func TestWebUIInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := newBrowser(t, 3*time.Minute)
	cons := watchConsole(ctx)
	ta := newTestApp(t, nil)
	ta.browserFixture()
	u := &ui{t: t, ctx: ctx, dir: screenshotDir(t)}
	base := ta.srv.URL + "/api/audit/ui"

	// The overview of a vault: the chart has one bar group per hour of
	// the window with the counts stats gives.
	start := time.Now()
	u.open(base + "#vault=webvault")
	loaded := time.Since(start)
	var timing struct{ API, Draw, Ready string }
	u.eval(`({api: document.getElementById('chart').getAttribute('data-api-ms'), draw: document.getElementById('chart').getAttribute('data-draw-ms'), ready: document.body.getAttribute('data-ready-ms')})`, &timing)
	t.Logf("page loaded and every panel drawn in %v (in-page %s ms); chart's stats answered in %s ms, chart drawn %s ms after", loaded.Round(time.Millisecond), timing.Ready, timing.API, timing.Draw)
	var drawMs float64
	if _, err := fmt.Sscan(timing.Draw, &drawMs); err != nil || drawMs > 1000 {
		t.Errorf("chart drawn %q ms after the API answered, want under 1000", timing.Draw)
	}
	u.screenshot("overview")
	if os.Getenv("KVAUDIT_UPDATE_SCREENSHOT") != "" {
		// The README's image.
		png, err := os.ReadFile(filepath.Join(u.dir, "overview.png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "ui.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	csvQuery := func() url.Values {
		var href string
		u.eval(`document.getElementById('csv').getAttribute('href')`, &href)
		q, err := url.ParseQuery(strings.SplitN(href, "?", 2)[1])
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	win := csvQuery()
	from, to := win.Get("from"), win.Get("to")

	t.Run("chart", func(t *testing.T) {
		u.t, ta.t = t, t
		var bars []map[string]string
		u.eval(`[...document.querySelectorAll('#chart g.bar')].map(g => ({hour: g.dataset.hour, '2xx': g.dataset['2xx'], '4xx': g.dataset['4xx'], '5xx': g.dataset['5xx'], total: g.dataset.total}))`, &bars)
		if len(bars) != 24 {
			t.Fatalf("%d bar groups, want 24 (one per hour of the last 24 hours)", len(bars))
		}
		for _, status := range []string{"", "2xx", "4xx", "5xx"} {
			var st statsAnswer
			path := "/api/audit/stats?vault=webvault&by=hour&limit=1000&from=" + from + "&to=" + to
			if status != "" {
				path += "&status=" + status
			}
			ta.apiJSON(path, &st)
			want := map[string]int{}
			sum := 0
			for _, g := range st.Groups {
				want[g.Key] = g.Count
				sum += g.Count
			}
			key := status
			if key == "" {
				key = "total"
			}
			for _, b := range bars {
				if got := b[key]; got != fmt.Sprint(want[b["hour"]]) {
					t.Errorf("hour %s %s: chart %s, stats %d", b["hour"], key, got, want[b["hour"]])
				}
				delete(want, b["hour"])
			}
			if len(want) != 0 || sum == 0 {
				t.Errorf("%s: stats hours outside the chart %v (sum %d)", key, want, sum)
			}
		}
	})

	t.Run("vaults' origins and the logs accounts", func(t *testing.T) {
		u.t, ta.t = t, t
		// The picker names each vault's subscription (from its blob path);
		// the accounts panel lists the logs account (region not set here).
		var r struct {
			Option string
			Rows   [][]string
		}
		u.eval(`({option: document.querySelector('#vault option[value="webvault"]').textContent,
			rows: [...document.querySelectorAll('#accounts tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))})`, &r)
		if !strings.HasPrefix(r.Option, "webvault (subscription ") {
			t.Errorf("vault option %q does not name its subscription", r.Option)
		}
		if len(r.Rows) != 1 || r.Rows[0][0] != "devstoreaccount1" || r.Rows[0][1] != "-" || r.Rows[0][6] != "" {
			t.Errorf("accounts panel rows %q, want one row of devstoreaccount1 without error", r.Rows)
		}
	})

	t.Run("top caller filters the table", func(t *testing.T) {
		u.t, ta.t = t, t
		var top string
		u.eval(`document.querySelector('#top-caller button').textContent`, &top)
		if top != "alice@contoso.com" {
			t.Fatalf("top caller %q", top)
		}
		u.after(chromedp.Click(chromedp.CSS("#top-caller button")))
		var callers []string
		u.eval(`[...document.querySelectorAll('#events tbody td.caller')].map(td => td.textContent)`, &callers)
		if len(callers) != 50 {
			t.Fatalf("%d rows, want a full page of 50", len(callers))
		}
		for _, c := range callers {
			if c != top {
				t.Fatalf("row of caller %q in the table filtered to %q", c, top)
			}
		}
		var hash string
		u.eval(`location.hash`, &hash)
		if !strings.Contains(hash, "caller=alice%40contoso.com") {
			t.Errorf("the filter is not in the URL: %s", hash)
		}
		u.screenshot("filtered")
	})

	t.Run("paging reaches the last event exactly once", func(t *testing.T) {
		u.t, ta.t = t, t
		q := csvQuery()
		q.Del("format")
		q.Del("limit")
		q.Set("limit", "50")
		want := map[string]bool{}
		var order []string
		cont := ""
		for {
			path := "/api/audit/events?" + q.Encode()
			if cont != "" {
				path += "&continuation=" + url.QueryEscape(cont)
			}
			var p struct {
				Events []struct {
					Source struct {
						Blob   string
						Offset int64
					}
				}
				Continuation string
			}
			ta.apiJSON(path, &p)
			for _, e := range p.Events {
				k := fmt.Sprintf("%s#%d", e.Source.Blob, e.Source.Offset)
				want[k] = true
				order = append(order, k)
			}
			if cont = p.Continuation; cont == "" {
				break
			}
		}
		var seen []string
		for pages := 1; ; pages++ {
			var keys []string
			u.eval(`[...document.querySelectorAll('#events tbody tr[data-key]')].map(tr => tr.dataset.key)`, &keys)
			seen = append(seen, keys...)
			var last bool
			u.eval(`document.getElementById('next').disabled`, &last)
			if last {
				break
			}
			if pages > 20 {
				t.Fatal("more than 20 pages")
			}
			u.do(chromedp.Click(chromedp.CSS("#next")))
			u.waitFor(fmt.Sprintf(`document.getElementById('pageinfo').textContent.startsWith('page %d:')`, pages+1))
		}
		if !slices.Equal(seen, order) {
			t.Fatalf("paged through %d events, the API lists %d: they differ", len(seen), len(order))
		}
		if len(order) <= 50 {
			t.Fatalf("only %d events: paging not exercised", len(order))
		}
	})

	t.Run("CSV download matches the API's CSV", func(t *testing.T) {
		u.t, ta.t = t, t
		got := u.download("#csv")
		var href string
		u.eval(`document.getElementById('csv').getAttribute('href')`, &href)
		resp, want := ta.do("GET", "/api/audit/"+href, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contentTypes["csv"] {
			t.Fatalf("API CSV: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if string(got) != string(want) || strings.Count(string(got), "\n") < 50 {
			t.Fatalf("downloaded CSV (%d bytes) differs from the API's (%d bytes)", len(got), len(want))
		}
	})

	t.Run("30 days asks only what a busy vault affords", func(t *testing.T) {
		u.t, ta.t = t, t
		u.open(base + "#vault=webvault&window=30d")
		var bars int
		u.eval(`document.querySelectorAll('#chart g.bar').length`, &bars)
		if bars != 720 {
			t.Fatalf("%d bar groups over 30 days, want 720", bars)
		}
		// What the page asked for, as the browser's resource timing lists it.
		var asked []string
		u.eval(`performance.getEntriesByType('resource').map(e => new URL(e.name).pathname + new URL(e.name).search)`, &asked)
		for _, uri := range asked {
			// Every stats request of the vault view is answered from the
			// per-hour counts (O(hours), whatever the events per day);
			// events are one page of 50; detections one day.
			switch path, _, _ := strings.Cut(uri, "?"); path {
			case pathStats:
				var st struct{ Source string }
				ta.apiJSON(uri, &st)
				if st.Source != "counts" {
					t.Errorf("%s is answered from %q, not the counts", uri, st.Source)
				}
			case pathEvents:
				if !strings.Contains(uri, "limit=50") {
					t.Errorf("%s: not one page", uri)
				}
			case pathDetections:
				q, _ := url.ParseQuery(strings.SplitN(uri, "?", 2)[1])
				f, _ := time.Parse(time.RFC3339, q.Get("from"))
				to, _ := time.Parse(time.RFC3339, q.Get("to"))
				if to.Sub(f) > 24*time.Hour {
					t.Errorf("%s: detections over more than a day by default", uri)
				}
			}
		}
		t.Logf("%d requests for the 30-day view", len(asked))
	})

	t.Run("markup in the logs is text", func(t *testing.T) {
		u.t, ta.t = t, t
		u.open(base + "#vault=webvault&object=" + url.QueryEscape(xss))
		var r struct {
			Imgs    int
			Objects []string
			Callers []string
		}
		u.eval(`({imgs: document.querySelectorAll('img').length, objects: [...document.querySelectorAll('#events td.object')].map(td => td.textContent), callers: [...document.querySelectorAll('#events td.caller')].map(td => td.textContent)})`, &r)
		if r.Imgs != 0 || len(r.Objects) != 1 || r.Objects[0] != xss || r.Callers[0] != xss {
			t.Fatalf("%+v, want the record's object and caller as the text %s and no img element", r, xss)
		}
		var inTop bool
		u.eval(`[...document.querySelectorAll('#top-object button, #top-caller button')].some(b => b.textContent === `+jsString(xss)+`)`, &inTop)
		if !inTop {
			t.Errorf("the markup object is not among the top lists as text")
		}
		u.screenshot("markup-as-text")
	})

	t.Run("detections link to their events", func(t *testing.T) {
		u.t, ta.t = t, t
		u.open(base + "#vault=webvault&window=7d")
		var kinds []string
		u.eval(`[...document.querySelectorAll('#detections li')].map(li => li.dataset.kind)`, &kinds)
		if !slices.Contains(kinds, "refusedAccess") || !slices.Contains(kinds, "sensitiveOperation") {
			t.Fatalf("detections %v, want refusedAccess and sensitiveOperation", kinds)
		}
		u.after(chromedp.Click(chromedp.CSS("#det-span")))
		var note string
		u.eval(`document.querySelector('#detections .note').textContent`, &note)
		if !strings.HasPrefix(note, "The whole window.") {
			t.Fatalf("after asking for the whole window: %q", note)
		}
		u.screenshot("detections")
		u.after(chromedp.Click(chromedp.CSS(`#detections li[data-kind="refusedAccess"] a`)))
		var statuses []string
		u.eval(`[...document.querySelectorAll('#events tbody td.num:nth-child(4)')].map(td => td.textContent)`, &statuses)
		if len(statuses) == 0 {
			t.Fatal("a refused-access finding links to no events")
		}
		for _, s := range statuses {
			if s != "403" {
				t.Fatalf("refused-access events show status %q", s)
			}
		}
	})

	t.Run("a caller across vaults", func(t *testing.T) {
		u.t, ta.t = t, t
		// All vaults without a caller, IP or object: the page asks for one.
		u.open(base + "#vault=webvault")
		u.after(chromedp.Evaluate[chromedp.Void](`(v => { v.value = ''; v.dispatchEvent(new Event('change')); })(document.getElementById('vault'))`))
		var msg string
		u.eval(`document.getElementById('message').hidden ? '' : document.getElementById('message').textContent`, &msg)
		if !strings.Contains(msg, "give a caller, IP or object") {
			t.Fatalf("all vaults without a key to look up: message %q", msg)
		}
		u.open(base + "#caller=alice%40contoso.com")
		var vaults []string
		u.eval(`[...new Set([...document.querySelectorAll('#events tbody td:nth-child(2)')].map(td => td.textContent))]`, &vaults)
		slices.Sort(vaults)
		if !slices.Equal(vaults, []string{"othervault", "webvault"}) {
			t.Fatalf("vaults in alice's events: %v", vaults)
		}
		var bars int
		u.eval(`document.querySelectorAll('#chart g.bar').length`, &bars)
		if bars != 24 {
			t.Fatalf("%d bars", bars)
		}
		u.screenshot("caller-across-vaults")
	})

	t.Run("phone width", func(t *testing.T) {
		u.t, ta.t = t, t
		u.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
		u.open(base + "#vault=webvault")
		var width struct{ Doc, View int }
		u.eval(`({doc: document.documentElement.scrollWidth, view: window.innerWidth})`, &width)
		if width.Doc > width.View {
			t.Errorf("the page is %d px wide on a %d px screen", width.Doc, width.View)
		}
		u.screenshotViewport("phone")
		u.do(chromedp.ScrollIntoView(chromedp.CSS("#events")))
		u.screenshotViewport("phone-events")
		u.do(chromedp.Evaluate[chromedp.Void]("window.scrollTo(0, 0)"))
		u.do(chromedp.EmulateReset())
	})
	u.t, ta.t = t, t
	cons.check(t)

	// make run's handler (no AuditApiKey) on its other loopback name.
	t.Run("on localhost", func(t *testing.T) {
		u.t, ta.t = t, t
		u.open(strings.Replace(base, "127.0.0.1", "localhost", 1) + "#vault=webvault")
		var r struct{ Bars, Rows int }
		u.eval(`({bars: document.querySelectorAll('#chart g.bar').length, rows: document.querySelectorAll('#events tbody tr[data-key]').length})`, &r)
		if r.Bars != 24 || r.Rows != 50 {
			t.Fatalf("on localhost: %d bars, %d rows", r.Bars, r.Rows)
		}
		cons.check(t)
	})

	// Another site, in the same browser, against make run's handler: a
	// page whose name now resolves to 127.0.0.1 reads nothing, and a form
	// it posts across sites starts nothing.
	t.Run("other sites", func(t *testing.T) {
		ta.t = t
		// A tab of its own: its refusals' statuses are not the page's
		// console errors.
		tab, closeTab := chromedp.NewContext(u.ctx)
		defer closeTab()
		u := &ui{t: t, ctx: tab, dir: u.dir}
		_, port, _ := strings.Cut(strings.TrimPrefix(ta.srv.URL, "http://"), ":")
		u.do(chromedp.Navigate("http://" + reboundSite + ":" + port + "/api/audit/events?vault=webvault"))
		var text string
		u.eval(`document.body.innerText`, &text)
		if !strings.Contains(text, "is not this machine") || strings.Contains(text, "webvault\",") || strings.Contains(text, "correlationId") {
			t.Fatalf("a rebound name reads: %.300s", text)
		}
		// A blob waits for CatchUp; another site's page posts a form to
		// /CatchUp as soon as it loads.
		hour := time.Now().UTC().Truncate(time.Hour)
		ta.put(hourBlob("csrfvault", hour), auditLine("csrfvault", hour, 1, "SecretGet", 200, "alice@contoso.com", "10.4.0.1", "x"))
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<form id=f method=post enctype=text/plain action="%s/CatchUp"><input name='{"x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`, ta.srv.URL)
		}))
		defer attacker.Close()
		_, aport, _ := strings.Cut(strings.TrimPrefix(attacker.URL, "http://"), ":")
		u.do(chromedp.Navigate("http://" + attackerSite + ":" + aport + "/"))
		u.waitFor(`location.pathname === '/CatchUp'`)
		u.eval(`document.body.innerText`, &text)
		if !strings.Contains(text, "cross-site request") {
			t.Fatalf("another site's form to /CatchUp: %.300s", text)
		}
		var vaults struct{ Vaults []string }
		ta.apiJSON("/api/audit/vaults", &vaults)
		if slices.Contains(vaults.Vaults, "csrfvault") {
			t.Fatalf("the cross-site form ran CatchUp: vaults %v", vaults.Vaults)
		}
	})

	t.Run("empty index", func(t *testing.T) {
		u.t, ta.t = t, t
		empty := newTestApp(t, nil)
		u.open(empty.srv.URL + "/api/audit/ui")
		var shown bool
		u.eval(`!document.getElementById('empty').hidden && document.getElementById('view').hidden`, &shown)
		if !shown {
			t.Fatal("an empty index does not say what to check")
		}
		u.screenshot("empty")
		cons.check(t)
	})

	// The key, in both modes that check one: standalone with AuditApiKey,
	// and under a stand-in for the host that refuses any path under
	// /api/audit/ without the function key, as HttpQuery's authLevel
	// function does.
	t.Run("with a key", func(t *testing.T) {
		u.t, ta.t = t, t
		plain := newTestApp(t, nil)
		plain.browserFixture()
		// The same index, served standalone with a key and as under the
		// host; what the browser sends each is recorded.
		serve := func(change func(*config.Settings), rec *requestLog) string {
			s := *plain.app.settings
			change(&s)
			a, err := newApp(&s, plain.app.log)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(nil)
			srv.Config = a.newServer()
			srv.Config.Handler = rec.wrap(srv.Config.Handler)
			srv.Listener = jsonErrorsListener(srv.Listener)
			srv.Start()
			t.Cleanup(srv.Close)
			return srv.URL
		}
		keyedLog, hostLog := &requestLog{}, &requestLog{}
		keyed := serve(func(s *config.Settings) { s.APIKey = testKey }, keyedLog)
		hosted := serve(func(s *config.Settings) { s.Port = 7071 }, &requestLog{})
		host := playHost(t, hosted, "hostkey", hostLog)
		for _, tt := range []struct {
			name, page, key string
			log             *requestLog
		}{
			{"standalone", keyed + "/api/audit/ui", testKey, keyedLog},
			{"host", host + "/api/audit/ui", "hostkey", hostLog},
		} {
			resp, err := http.Get(tt.page + "?code=wrong")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: a wrong key is %d", tt.name, resp.StatusCode)
			}
			// Only the page and its two assets carry the key in their URL;
			// every API request carries it in x-functions-key.
			asked := map[string]bool{}
			checkLog := func() {
				t.Helper()
				for _, r := range tt.log.all() {
					if !strings.HasPrefix(r.path, apiPrefix) || r.status == http.StatusUnauthorized { // the wrong key, above
						continue
					}
					asked[r.path] = true
					q, _ := url.ParseQuery(r.query)
					switch _, inURL := q["code"]; {
					case r.path == pathUI || r.path == pathUIScript || r.path == pathUIStyle:
						if q.Get("code") != tt.key {
							t.Fatalf("%s: %s without ?code=", tt.name, r.path)
						}
					case inURL || strings.Contains(r.query, tt.key):
						t.Fatalf("%s: the key is in the URL of %s?%s", tt.name, r.path, r.query)
					case r.key != tt.key:
						t.Fatalf("%s: %s?%s without the key in %s", tt.name, r.path, r.query, headerFunctionKey)
					}
				}
			}
			u.open(tt.page + "?code=" + tt.key + "#vault=webvault")
			checkLog()
			var bars, rows int
			u.eval(`document.querySelectorAll('#chart g.bar').length`, &bars)
			u.eval(`document.querySelectorAll('#events tbody tr[data-key]').length`, &rows)
			if bars != 24 || rows != 50 {
				t.Fatalf("%s: %d bars, %d rows", tt.name, bars, rows)
			}
			// The CSV is fetched with the key and saved: the API's CSV.
			csv := u.download("#csv")
			var query string
			u.eval(`document.getElementById('csv').dataset.query`, &query)
			resp, want := plain.do("GET", "/api/audit/events?"+query, nil)
			if resp.StatusCode != 200 || string(csv) != string(want) || strings.Count(string(csv), "\n") < 50 {
				t.Fatalf("%s: downloaded CSV (%d bytes) differs from the API's (%d bytes, %d)", tt.name, len(csv), len(want), resp.StatusCode)
			}
			// The status link opens the status, fetched with the key, in a
			// tab of its own.
			u.do(chromedp.Click(chromedp.CSS("#status-link2")))
			deadline := time.Now().Add(20 * time.Second)
			for !tt.log.saw(pathStatus, http.StatusOK) || !u.hasTab("blob:"+strings.TrimSuffix(tt.page, "/api/audit/ui")+"/") {
				if time.Now().After(deadline) {
					targets, _ := chromedp.Targets(u.ctx)
					t.Fatalf("%s: the status link showed no status: %v; tabs %v", tt.name, tt.log.all(), targets)
				}
				time.Sleep(25 * time.Millisecond)
			}
			checkLog()
			for _, p := range []string{pathVaults, pathStats, pathEvents, pathDetections, pathStatus, pathUIScript, pathUIStyle} {
				if !asked[p] {
					t.Errorf("%s: the page never asked for %s", tt.name, p)
				}
			}
		}
		cons.check(t)
	})
}

// requestLog records what a browser sent a server: path, query and the
// key header, and the status answered.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	path, query, key string
	status           int
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.reqs = append(l.reqs, loggedRequest{path: r.URL.Path, query: r.URL.RawQuery, key: r.Header.Get(headerFunctionKey), status: sw.status})
	})
}

func (l *requestLog) all() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

func (l *requestLog) saw(path string, status int) bool {
	for _, r := range l.all() {
		if r.path == path && r.status == status {
			return true
		}
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController (the reverse proxy's flushes) reach
// the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// playHost stands in for the Functions host in front of a handler: every
// path under /api/audit/ needs the function key (header or ?code=), as
// HttpQuery's authLevel function asks, and is forwarded with its query
// string, code included, as the host forwards it. rec records what
// reached the stand-in.
func playHost(t *testing.T, handlerURL, key string, rec *requestLog) string {
	t.Helper()
	target, _ := url.Parse(handlerURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(rec.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/audit/") && r.Header.Get(headerFunctionKey) != key && r.URL.Query().Get("code") != key {
			w.WriteHeader(http.StatusUnauthorized) // the host's answer has no body
			return
		}
		proxy.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)
	return srv.URL
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
