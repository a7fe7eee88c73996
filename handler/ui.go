package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"path"
	"strings"
)

// The web page: GET /api/audit/ui, one HTML page whose script draws a
// vault's activity from the API (vaults, stats, events, detections). Its
// files are embedded: nothing is loaded from anywhere but the handler, so
// the page works without outbound internet and no third party can change
// what runs in it.
//
// The key. Under the host, HttpQuery's authLevel function applies to every
// path under audit/, the page's script and style sheet included, and a
// browser sends no x-functions-key header when it loads them: their URLs
// must carry ?code= when the page's did. So the page route, and only it,
// gets the code from front (route.keepsCode) and repeats it in the two
// asset URLs — escaped by html/template, in an answer nobody may cache
// (no-store) and that sends no Referer anywhere. The key is the one the
// caller just sent; the page holds no other secret. The script reads the
// code from its own location and sends it as the x-functions-key header
// with every API call, never in an API URL (handler/ui/app.js).
//
//go:embed ui
var uiFiles embed.FS

const (
	pathUI       = apiPrefix + "ui"
	pathUIScript = apiPrefix + "ui/app.js"
	pathUIStyle  = apiPrefix + "ui/app.css"

	// uiCSP allows the page's own script and style sheet and calls to its
	// own origin: no inline script or style, no eval, no frames, no
	// plugins, no form posts.
	uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	// uiCache lets a browser keep the page's files but ask, with the
	// ETag, whether they changed before each use: a new deployment is
	// picked up at once, and an unchanged file costs a 304.
	uiCache = "private, no-cache"
)

// webUI serves the page and its assets.
type webUI struct {
	tmpl   *template.Template
	assets map[string]*uiAsset // by request path
}

// uiAsset is one embedded file, with its gzip encoding made once at start.
type uiAsset struct {
	contentType string
	body, gz    []byte
	etag        string
}

func newWebUI() *webUI {
	u := &webUI{
		tmpl:   template.Must(template.ParseFS(uiFiles, "ui/index.html")),
		assets: map[string]*uiAsset{},
	}
	for p, ct := range map[string]string{pathUIScript: "text/javascript; charset=utf-8", pathUIStyle: "text/css; charset=utf-8"} {
		body, err := uiFiles.ReadFile("ui/" + path.Base(p))
		if err != nil {
			panic(err) // embedded: cannot happen in a built binary
		}
		u.assets[p] = &uiAsset{contentType: ct, body: body, gz: gzipped(body), etag: etagOf(body)}
	}
	return u
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// page serves GET /api/audit/ui.
func (u *webUI) page(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	code := keptCode(r)
	if !printableCode(code) {
		code = "" // the assets then load only where no key is needed
	}
	if err := u.tmpl.Execute(&buf, struct{ Code string }{code}); err != nil {
		writeError(w, http.StatusInternalServerError, "internal error: the page could not be rendered")
		return
	}
	body := buf.Bytes()
	// The page repeats the caller's key: no cache may keep it (front's
	// no-store stays).
	serveUIFile(w, r, "text/html; charset=utf-8", body, nil, etagOf(body), false)
}

// asset serves the page's script and style sheet.
func (u *webUI) asset(w http.ResponseWriter, r *http.Request) {
	a := u.assets[r.URL.Path]
	serveUIFile(w, r, a.contentType, a.body, a.gz, a.etag, true)
}

// serveUIFile answers body (or gz, its gzip encoding, when given and the
// client takes it) with the page's security headers, its ETag, and 304
// when the client already has it.
func serveUIFile(w http.ResponseWriter, r *http.Request, contentType string, body, gz []byte, etag string, cacheable bool) {
	h := w.Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Type", contentType)
	if cacheable {
		h.Set("Cache-Control", uiCache)
	}
	useGzip := gz != nil && acceptsGzip(r)
	if gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if useGzip {
			etag = strings.TrimSuffix(etag, `"`) + `-gz"`
		}
	}
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if useGzip {
		h.Set("Content-Encoding", "gzip")
		body = gz
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// etagMatches is If-None-Match's weak comparison against etag.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// printableCode says whether code may be repeated in the page: a key of
// printable ASCII, as function keys are, of reasonable length.
func printableCode(code string) bool {
	if code == "" || len(code) > 1024 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] <= ' ' || code[i] >= 0x7f {
			return false
		}
	}
	return true
}
