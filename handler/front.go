package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/kvaudit/kvaudit/internal/config"
)

// Who may call the handler, and how it is checked.
//
// Under the Functions host (FUNCTIONS_CUSTOMHANDLER_PORT set) the host is the
// handler's only client: it checks function keys on HttpQuery (authLevel
// function) before forwarding, and originates the BlobTrigger and CatchUp
// invocations itself, with no key of ours. So the handler listens on
// loopback only, whatever -addr says, and checks no key; AuditApiKey is
// ignored there (the host forwards the caller's function key, which is not
// AuditApiKey, and sends none with its own invocations).
//
// Standalone (no FUNCTIONS_CUSTOMHANDLER_PORT), nothing checks keys for us.
// Without AuditApiKey the handler listens on loopback only, for this
// machine. With it, every route — readiness, /BlobTrigger, /CatchUp and the
// API — requires the key, and any address may be used.
//
// Loopback is not a wall against a browser on this machine, whatever site
// it shows. Two guards apply where no key is checked and the handler
// serves this machine alone (standalone without AuditApiKey, make run):
//
//   - DNS rebinding: a page of rebind.attacker.example re-resolves its name
//     to 127.0.0.1 and reads our answers as its own origin. Its requests
//     carry its Host, so only a loopback Host is answered (421 otherwise):
//     127.0.0.1, localhost or [::1], with or without a port.
//   - Cross-site requests: any request a browser marks Sec-Fetch-Site:
//     cross-site is refused (403): no page of another site may start
//     CatchUp or a blob's ingest, or be opened from one of its links.
//
// Under the host neither applies: the host forwards an HttpQuery request
// with the caller's own headers, Host included, so the handler sees
// <app>.azurewebsites.net (azure-functions-host: ProcessHttpInAndOutInvocationRequest
// in src/WebJobs.Script/Workers/Http/DefaultHttpWorkerService.cs builds
// the forwarded request with ToHttpRequestMessage of
// src/WebJobs.Script/Extensions/HttpRequestExtensions.cs, which copies
// every request header); the host has checked the function key, and the
// handler's port is the host's alone.
// With AuditApiKey neither applies either: the handler may be reached by
// any name, and every request needs the key, which no other site has.
//
// In every mode POST /BlobTrigger and POST /CatchUp take only
// Content-Type: application/json (415 otherwise), which a browser cannot
// send across sites without a CORS preflight that the handler never
// grants. The host sends it with its invocations: it builds them as an
// ObjectContent with JsonMediaTypeFormatter ("application/json;
// charset=utf-8"; azure-functions-host,
// src/WebJobs.Script/Workers/MessageExtensions/HttpScriptInvocationContextExtensions.cs),
// and so do internal/funchost/hosttest and tools/devhost.

// hostMode reports whether the Functions host started the handler.
func hostMode(s *config.Settings) bool { return s.Port != 0 }

// requiredKey is the key every request must carry, nil when none is
// checked (under the host, or standalone without AuditApiKey).
func requiredKey(s *config.Settings) []byte {
	if hostMode(s) || s.APIKey == "" {
		return nil
	}
	return []byte(s.APIKey)
}

// checkListenAddr says whether the handler may listen on addr (an IP
// address or "localhost"): loopback always; another address only
// standalone with AuditApiKey set.
func checkListenAddr(addr string, s *config.Settings) error {
	if isLoopback(addr) {
		return nil
	}
	if hostMode(s) {
		return fmt.Errorf("-addr %s is not a loopback address: under the Functions host (%s set) the handler listens on loopback only, for the host, which checks function keys",
			addr, config.SettingCustomPort)
	}
	if s.APIKey == "" {
		return fmt.Errorf("-addr %s is not a loopback address: set %s to serve beyond this machine (every route then requires it, as %s or ?code=)",
			addr, config.SettingAPIKey, headerFunctionKey)
	}
	return nil
}

// localOnly says whether the handler guards against other sites in a
// browser on this machine (see above): standalone without AuditApiKey.
func localOnly(s *config.Settings) bool { return !hostMode(s) && s.APIKey == "" }

// loopbackHost reports whether a request's Host names this machine by its
// loopback name or address: 127.0.0.1, localhost, [::1] (any loopback IP),
// with or without a port. An empty Host (HTTP/1.0 without one) is not.
func loopbackHost(host string) bool {
	name := host
	if h, port, err := net.SplitHostPort(host); err == nil {
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return false
		}
		name = h
	} else if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return false
		}
		name = host[1 : len(host)-1]
	}
	return name != "" && isLoopback(name)
}

// jsonContent reports whether r says its body is JSON: media type
// application/json, parameters (charset) allowed.
func jsonContent(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

func isLoopback(addr string) bool {
	host := strings.Trim(addr, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// front is the handler of every request. In order, it
//
//   - requires the key when one is set (before routing, so that nobody
//     without it learns which paths exist);
//   - without a key, on loopback, answers only a loopback Host and no
//     cross-site request (see above);
//   - takes the key out of the query string (?code=, as the host accepts
//     it), so no route counts it as an unknown parameter and no log sees
//     it;
//   - routes by method and path, answering what the mux would answer in
//     plain text — 404, 405 — as {"error": …};
//   - refuses query parameters on routes that take none, and a body
//     that is not JSON on routes that take JSON (route.jsonBody);
//   - hands the code on, in the request's context, to the one route that
//     needs it: the web page, whose asset URLs must carry it under the
//     host (see handler/ui.go).
//
// Answers are audit data or about it: no cache may keep them.
type front struct {
	mux    *http.ServeMux
	routes map[string]*route // by mux pattern
	list   string            // every route, for the 404 message
	key    []byte            // required when not nil
	digest [sha256.Size]byte // of key
	// local: a loopback Host only, no cross-site request (localOnly).
	local bool
}

// newFront routes to routes; key is required when not nil, and local
// turns on the guards of a handler that serves this machine alone.
func newFront(routes []route, key []byte, local bool) *front {
	f := &front{mux: http.NewServeMux(), routes: map[string]*route{}, key: key, digest: sha256.Sum256(key), local: local}
	var names []string
	for i := range routes {
		rt := &routes[i]
		pattern := rt.method + " " + rt.path
		if rt.path == "/" {
			pattern += "{$}" // "/" alone would match every path
		}
		f.mux.Handle(pattern, rt.h)
		f.routes[pattern] = rt
		names = append(names, rt.method+" "+rt.path)
	}
	f.list = strings.Join(names, ", ")
	return f
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	markHandled(r) // respond.go: from here on, answers are ours
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A URL may carry the key as ?code=: no link followed from an answer
	// (the web page's, above all) may send it on in a Referer.
	w.Header().Set("Referrer-Policy", "no-referrer")
	if f.key != nil && !f.keyOK(r) {
		writeError(w, http.StatusUnauthorized, "missing or wrong API key: send the "+config.SettingAPIKey+" value in the "+headerFunctionKey+" header or the code parameter")
		return
	}
	if f.local && !loopbackHost(r.Host) {
		// The status a server gives a request for a name it does not
		// serve (RFC 9110, 15.5.20).
		writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q is not this machine: without %s the handler answers only requests for 127.0.0.1, localhost or [::1] (a page that re-resolves its own name to 127.0.0.1 must not read the audit log); use one of them in the URL, or set %s",
			truncateText(r.Host, 100), config.SettingAPIKey, config.SettingAPIKey))
		return
	}
	if f.local && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		writeError(w, http.StatusForbidden, "a cross-site request (Sec-Fetch-Site: cross-site) is refused: without "+config.SettingAPIKey+
			" the handler serves this machine's own tools and its own page; open the page by its URL, not from another site")
		return
	}
	code := codeOf(r)
	r = withoutCode(r)
	rt, h := f.match(r)
	if rt != nil && rt.keepsCode && code != "" {
		r = r.WithContext(context.WithValue(r.Context(), codeKey{}, code))
	}
	if rt == nil {
		f.notRouted(w, r)
		return
	}
	if r.Method == http.MethodHead && !rt.headOK {
		methodNotAllowed(w, r, rt.method)
		return
	}
	if !rt.params && r.URL.RawQuery != "" {
		v, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "the query string is not valid URL encoding: "+err.Error())
			return
		}
		if len(v) > 0 {
			names := slices.Sorted(maps.Keys(v))
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q: %s %s takes none", truncateText(names[0], 100), rt.method, rt.path))
			return
		}
		// "?" or "&" alone: nothing
	}
	if rt.jsonBody && !jsonContent(r) {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%s %s takes Content-Type: application/json (as the Functions host sends its invocations), not %q",
			rt.method, rt.path, truncateText(r.Header.Get("Content-Type"), 100)))
		return
	}
	h.ServeHTTP(w, r)
}

// match is r's route and handler, nil when the mux has no route for r's
// method and path. The mux's own answers are not routes: its 404 and 405,
// and the redirect it answers for a path that is not clean ("//x",
// "/a/../x"), which it reports under the pattern of the cleaned path —
// every route is one literal path, so the path must be that path.
func (f *front) match(r *http.Request) (*route, http.Handler) {
	h, pattern := f.mux.Handler(r)
	rt := f.routes[pattern]
	if rt == nil || rt.path != r.URL.Path {
		return nil, nil
	}
	return rt, h
}

// notRouted answers a request no route takes: 405 when the path has a
// route for another method, else 404 naming every route.
func (f *front) notRouted(w http.ResponseWriter, r *http.Request) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if rt, _ := f.match(probe); rt != nil {
			methodNotAllowed(w, r, rt.method)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no such path %q; the handler serves %s", truncateText(r.URL.Path, 200), f.list))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s: use %s", truncateText(r.Method, 20), truncateText(r.URL.Path, 200), allow))
}

// keyOK compares the request's key with the required one: SHA-256 digests
// in constant time, so neither the key's content nor its length shows in
// the answer's timing. The header wins over ?code=; a repeated code is
// wrong.
func (f *front) keyOK(r *http.Request) bool {
	key := r.Header.Get(headerFunctionKey)
	if key == "" {
		key = codeOf(r)
	}
	got := sha256.Sum256([]byte(key))
	return key != "" && subtle.ConstantTimeCompare(got[:], f.digest[:]) == 1
}

// codeKey is the context key under which a route that keeps the code
// (see route.keepsCode) finds it.
type codeKey struct{}

// codeOf is r's single ?code= value, "" when there is none or more than
// one.
func codeOf(r *http.Request) string {
	q, _ := url.ParseQuery(r.URL.RawQuery) // a bad escape elsewhere leaves code readable
	if codes := q[paramCode]; len(codes) == 1 {
		return codes[0]
	}
	return ""
}

// keptCode is the ?code= value the request to a route that keeps it
// came with (see route.keepsCode), "" for any other route.
func keptCode(r *http.Request) string {
	code, _ := r.Context().Value(codeKey{}).(string)
	return code
}

// withoutCode is r without the code parameter in its query string; the
// rest of the query is kept byte for byte.
func withoutCode(r *http.Request) *http.Request {
	if r.URL.RawQuery == "" {
		return r
	}
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if name, err := url.QueryUnescape(k); err == nil && name == paramCode {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == len(parts) {
		return r
	}
	r2 := r.WithContext(r.Context())
	u := *r.URL
	u.RawQuery = strings.Join(kept, "&")
	r2.URL = &u
	r2.RequestURI = u.RequestURI()
	return r2
}
