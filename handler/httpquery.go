package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/query"
)

// openAPI describes the API under /api/audit; a test checks it against the
// routes the handler registers.
//
//go:embed openapi.json
var openAPI []byte

// API paths, under the host's route prefix "api" and HttpQuery's route
// "audit/{*path}".
const (
	apiPrefix        = "/api/audit/"
	pathEvents       = apiPrefix + "events"
	pathStats        = apiPrefix + "stats"
	pathDetections   = apiPrefix + "detections"
	pathOpenAPI      = apiPrefix + "openapi.json"
	apiCatchAll      = apiPrefix + "{path...}"
	paramFormat      = "format"
	paramCode        = "code"            // the function key, as the host accepts it
	headerFunctionKy = "x-functions-key" // likewise
)

// Output formats of every endpoint: json is the documented envelope;
// ndjson and csv carry its rows (events, groups or findings) one per line.
var formats = []string{"json", "ndjson", "csv"}

// queryAPI serves GET /api/audit/… (the HttpQuery function, forwarded by
// the host): it reads parameters and writes answers; package query does
// the rest.
type queryAPI struct {
	q   *query.Querier
	log *slog.Logger
	// apiKey, when set, is required on every request: the handler runs
	// standalone (no host in front to check authLevel function).
	apiKey []byte
	now    func() time.Time
}

// newQueryAPI builds the API from the settings. Behind the Functions host
// (FUNCTIONS_CUSTOMHANDLER_PORT set) the host enforces authLevel function
// and the handler checks nothing itself; standalone, AuditApiKey, when
// set, is required on every request.
func newQueryAPI(s *config.Settings, tables *index.Tables, log *slog.Logger) *queryAPI {
	a := &queryAPI{
		q:   &query.Querier{Tables: tables, Limits: query.Limits{MaxDays: s.QueryMaxDays}},
		log: log,
		now: time.Now,
	}
	if s.APIKey != "" && s.Port == 0 {
		a.apiKey = []byte(s.APIKey)
	}
	return a
}

// endpoint is one route of the API.
type endpoint struct {
	path string
	h    http.HandlerFunc
}

func (a *queryAPI) endpoints() []endpoint {
	return []endpoint{
		{pathEvents, a.events},
		{pathStats, a.stats},
		{pathDetections, a.detections},
		{pathOpenAPI, a.openAPI},
	}
}

// routes registers the API on mux. Every other path under /api/audit/
// answers 404, and another method on a path that exists 405, both in the
// API's JSON error shape (the mux's own answers are plain text).
func (a *queryAPI) routes(mux *http.ServeMux) {
	for _, e := range a.endpoints() {
		mux.Handle("GET "+e.path, a.guard(e.h))
	}
	mux.Handle(apiCatchAll, a.guard(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			probe := r.Clone(r.Context())
			probe.Method = http.MethodGet
			if _, pattern := mux.Handler(probe); pattern != apiCatchAll {
				w.Header().Set("Allow", http.MethodGet)
				writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s: use GET", r.Method, r.URL.Path))
				return
			}
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such API path %q; the API serves %s, %s, %s and %s",
			truncateText(r.URL.Path, 200), pathEvents, pathStats, pathDetections, pathOpenAPI))
	}))
}

// guard requires the API key when one is configured (standalone only).
// The comparison is of SHA-256 digests in constant time, so neither the
// key's content nor its length shows in the answer's timing. Answers are
// audit data: no cache may keep them.
func (a *queryAPI) guard(h http.HandlerFunc) http.Handler {
	want := sha256.Sum256(a.apiKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if len(a.apiKey) == 0 {
			h(w, r)
			return
		}
		key := r.Header.Get(headerFunctionKy)
		if key == "" {
			key = r.URL.Query().Get(paramCode)
		}
		got := sha256.Sum256([]byte(key))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeError(w, http.StatusUnauthorized, "missing or wrong API key: send the "+config.SettingAPIKey+" value in the "+headerFunctionKy+" header or the code parameter")
			return
		}
		h(w, r)
	})
}

// checkListenAddr refuses to serve the API beyond this machine without a
// key: standalone (no FUNCTIONS_CUSTOMHANDLER_PORT) on a non-loopback
// address, AuditApiKey must be set. Behind the host the handler listens on
// loopback for the host alone.
func checkListenAddr(addr string, s *config.Settings) error {
	if s.APIKey != "" {
		return nil
	}
	host := strings.Trim(addr, "[]")
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-addr %s is not a loopback address: set %s to serve the query API beyond this machine (clients then send it as %s or ?code=)",
		addr, config.SettingAPIKey, headerFunctionKy)
}

// values reads the query string strictly (a malformed escape is a 400,
// not silently dropped) and takes out the handler's own parameters: the
// output format and the function key.
func values(r *http.Request) (url.Values, string, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, "", &query.ParamError{Msg: "the query string is not valid URL encoding: " + err.Error()}
	}
	v.Del(paramCode)
	format := "json"
	if fs, ok := v[paramFormat]; ok {
		if len(fs) != 1 || !contains(formats, fs[0]) {
			return nil, "", &query.ParamError{Param: paramFormat, Msg: "want one of " + strings.Join(formats, ", ")}
		}
		format = fs[0]
		v.Del(paramFormat)
	}
	return v, format, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fail answers err: 400 for the caller's mistake, 409 when the index was
// written by an older layout (run handler backfill), 503 when storage is
// unreachable or refuses kvaudit's identity (worth a retry), 500
// otherwise. A caller that went away gets nothing.
func (a *queryAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *query.ParamError
	var ae *azstore.AuthError
	switch {
	case errors.As(err, &pe):
		writeError(w, http.StatusBadRequest, pe.Error())
	case errors.Is(err, context.Canceled) || r.Context().Err() != nil:
		a.log.Debug("query: caller went away", slog.String("path", r.URL.Path))
	case errors.Is(err, query.ErrOldLayout):
		// The index must be rebuilt before it answers: say so rather
		// than answer from half of it.
		writeError(w, http.StatusConflict, err.Error())
	case errors.As(err, &ae):
		// Not the caller's fault, and not for them to fix: say which
		// setting the operator should check, without its value or the
		// SDK's detail (that goes to the log).
		a.log.Error("query: storage refused access", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "the index storage refused access or no token could be had; try again later. "+ae.Setting+": "+ae.Check)
	case azstore.IsTransient(err):
		a.log.Warn("query: storage unavailable", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "the index storage is unavailable or busy; try again later")
	default:
		a.log.Error("query failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, "internal error; see the handler's log")
	}
}

// events serves GET /api/audit/events, streaming: each event is written as
// it is read, and the continuation last.
func (a *queryAPI) events(w http.ResponseWriter, r *http.Request) {
	v, format, err := values(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	eq, err := query.ParseEvents(v, a.now(), a.q.Limits)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	lw := &lazyResponse{w: w, contentType: contentTypes[format]}
	// Until the buffer first fills, nothing is sent: an error before that
	// is still a clean error answer.
	bw := bufio.NewWriterSize(lw, 32<<10)
	out := newEventWriter(bw, format)
	next, err := a.q.Events(r.Context(), eq, out.event)
	if err == nil {
		err = out.end(next)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		lw.start() // an empty page still has a status line
		return
	}
	if !lw.started {
		a.fail(w, r, err)
		return
	}
	// Half an answer has gone out with 200; cutting the connection is the
	// only way left to tell the client it is incomplete.
	if r.Context().Err() == nil {
		a.log.Error("query: events failed while streaming", slog.String("error", err.Error()))
	}
	panic(http.ErrAbortHandler)
}

// stats serves GET /api/audit/stats.
func (a *queryAPI) stats(w http.ResponseWriter, r *http.Request) {
	v, format, err := values(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sq, err := query.ParseStats(v, a.now(), a.q.Limits)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.q.Stats(r.Context(), sq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.answer(w, format, func(bw *bufio.Writer) error { return writeStats(bw, format, st) })
}

// detections serves GET /api/audit/detections.
func (a *queryAPI) detections(w http.ResponseWriter, r *http.Request) {
	v, format, err := values(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	dq, err := query.ParseDetections(v, a.now(), a.q.Limits)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d, err := a.q.Detections(r.Context(), dq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.answer(w, format, func(bw *bufio.Writer) error { return writeDetections(bw, format, d) })
}

// answer writes a computed answer with status 200.
func (a *queryAPI) answer(w http.ResponseWriter, format string, write func(*bufio.Writer) error) {
	w.Header().Set("Content-Type", contentTypes[format])
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	if err := write(bw); err == nil {
		_ = bw.Flush() // the client may have gone; nothing to do
	}
}

// openAPI serves GET /api/audit/openapi.json.
func (a *queryAPI) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI)
}

// lazyResponse sends the status line and headers with the first bytes of
// the body, so that an error found before then can still be answered
// properly.
type lazyResponse struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (l *lazyResponse) start() {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.contentType)
		l.w.WriteHeader(http.StatusOK)
	}
}

func (l *lazyResponse) Write(p []byte) (int, error) {
	l.start()
	return l.w.Write(p)
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
