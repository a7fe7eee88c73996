package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/config"
)

// uiAssetURLs are the script and style sheet URLs a page names.
var uiAssetURLs = regexp.MustCompile(`(?:src|href)="(ui/app\.(?:js|css)[^"]*)"`)

func assetURLs(t *testing.T, page []byte) []string {
	t.Helper()
	var out []string
	for _, m := range uiAssetURLs.FindAllSubmatch(page, -1) {
		out = append(out, strings.ReplaceAll(string(m[1]), "&amp;", "&"))
	}
	if len(out) != 2 {
		t.Fatalf("page names %d assets, want 2: %s", len(out), page)
	}
	return out
}

// The page and its assets: security headers, caching, compression, and
// the key passed on to the asset URLs in each way the handler runs.
func TestWebUIHeadersAndKey(t *testing.T) {
	for _, m := range []struct {
		name     string
		env      map[string]string
		enforced bool
	}{
		{"host", map[string]string{config.SettingCustomPort: "7071"}, false},
		{"standalone without key", nil, false},
		{"standalone with key", map[string]string{config.SettingAPIKey: testKey}, true},
	} {
		t.Run(m.name, func(t *testing.T) {
			ta := newTestApp(t, m.env)
			resp, page := ta.send("GET", "/api/audit/ui?code="+testKey, "", nil)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
			}
			checkUIHeaders(t, resp)
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("page Cache-Control %q: the page repeats the key, no cache may keep it", cc)
			}
			for _, u := range assetURLs(t, page) {
				if !strings.HasSuffix(u, "?code="+testKey) {
					t.Errorf("asset URL %q does not carry the page's code", u)
				}
				// The browser resolves ui/app.js against /api/audit/ui.
				path := "/api/audit/" + u
				resp, body := ta.send("GET", path, "", http.Header{"Accept-Encoding": {"gzip"}})
				if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Cache-Control") != uiCache {
					t.Fatalf("%s: %d %q %q", path, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Cache-Control"))
				}
				checkUIHeaders(t, resp)
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				plain, err := io.ReadAll(zr)
				if err != nil || len(plain) < 1000 {
					t.Fatalf("%s: %d bytes, %v", path, len(plain), err)
				}
				etag := resp.Header.Get("ETag")
				resp, body = ta.send("GET", path, "", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {etag}})
				if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
					t.Fatalf("%s with If-None-Match %s: %d", path, etag, resp.StatusCode)
				}
				resp, body = ta.send("GET", path, "", http.Header{"Accept-Encoding": {"identity"}, "If-None-Match": {etag}})
				if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, plain) {
					t.Fatalf("%s plain after a gzip ETag: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Encoding"))
				}
				// Without the key: refused standalone with AuditApiKey
				// (under the host, the host refuses it before us).
				bare := strings.SplitN(path, "?", 2)[0]
				resp, _ = ta.send("GET", bare, "", nil)
				if m.enforced != (resp.StatusCode == http.StatusUnauthorized) {
					t.Fatalf("%s without code: %d", bare, resp.StatusCode)
				}
			}
			// No code, no code in the asset URLs.
			if !m.enforced {
				_, page := ta.send("GET", "/api/audit/ui", "", nil)
				for _, u := range assetURLs(t, page) {
					if strings.Contains(u, "code") {
						t.Errorf("asset URL %q of a page opened without code", u)
					}
				}
			}
		})
	}
}

func checkUIHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Security-Policy": uiCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe") || strings.Contains(csp, "*") {
		t.Errorf("CSP allows too much: %s", csp)
	}
}

// A code is escaped where the page repeats it, and a code that is not a
// plausible key is not repeated at all.
func TestWebUICodeIsEscaped(t *testing.T) {
	ta := newTestApp(t, nil)
	for _, tt := range []struct{ code, want string }{
		{`k"><script>alert(1)</script>`, `?code=k%22%3e%3cscript%3ealert%281%29%3c%2fscript%3e"`},
		{"a+b/c==", "?code=a%2bb%2fc%3d%3d\""},
		{"two words", `ui/app.js"`},
	} {
		_, page := ta.send("GET", "/api/audit/ui?code="+urlQueryEscape(tt.code), "", nil)
		if bytes.Contains(page, []byte("<script>alert")) || !bytes.Contains(page, []byte(tt.want)) {
			t.Errorf("code %q: page does not hold %q:\n%s", tt.code, tt.want, page)
		}
	}
}

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", " ", "%20", "#", "%23", "\"", "%22", "<", "%3C", ">", "%3E", "/", "%2F", "=", "%3D")
	return r.Replace(s)
}

// The page's own files stay small: what a browser downloads, compressed.
func TestWebUISize(t *testing.T) {
	u := newWebUI()
	total := 0
	for p, a := range u.assets {
		t.Logf("%s: %d bytes, %d gzip", p, len(a.body), len(a.gz))
		total += len(a.gz)
	}
	page, _ := uiFiles.ReadFile("ui/index.html")
	total += len(gzipped(page))
	t.Logf("page and assets: %d bytes gzip", total)
	if total > 200<<10 {
		t.Fatalf("the page's assets are %d bytes compressed, over 200 KB", total)
	}
}

// GET /api/audit/vaults lists every indexed vault; [] before the first.
func TestVaultsRoute(t *testing.T) {
	ta := newTestApp(t, nil)
	resp, body := ta.send("GET", "/api/audit/vaults", "", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"details":[],"vaults":[]}` {
		t.Fatalf("empty index: %d %s", resp.StatusCode, body)
	}
	ta = fixtureApp(t)
	resp, body = ta.send("GET", "/api/audit/vaults", "", nil)
	var v struct {
		Vaults  []string
		Details []struct {
			Name, Subscription string
			Accounts           []string
		}
	}
	if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if strings.Join(v.Vaults, ",") != "kv1,testpermissionvault" || len(v.Details) != 2 {
		t.Fatalf("vaults %s", body)
	}
	// Where each vault's logs come from: its subscription, from the blob
	// path, and its logs account (the one Azurite's).
	for _, d := range v.Details {
		if d.Subscription == "" || strings.Join(d.Accounts, ",") != "devstoreaccount1" {
			t.Errorf("vault details %+v", d)
		}
	}
}
