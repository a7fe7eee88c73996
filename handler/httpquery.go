package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"log/slog"
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
	apiPrefix         = "/api/audit/"
	pathEvents        = apiPrefix + "events"
	pathStats         = apiPrefix + "stats"
	pathDetections    = apiPrefix + "detections"
	pathOpenAPI       = apiPrefix + "openapi.json"
	pathStatus        = apiPrefix + "status"
	pathVaults        = apiPrefix + "vaults"
	paramFormat       = "format"
	paramCode         = "code"            // the function key, as the host accepts it
	headerFunctionKey = "x-functions-key" // likewise
)

// Output formats of every endpoint: json is the documented envelope;
// ndjson and csv carry its rows (events, groups or findings) one per line.
var formats = []string{"json", "ndjson", "csv"}

// queryAPI serves GET /api/audit/… (the HttpQuery function, forwarded by
// the host): it reads parameters and writes answers; package query does
// the rest.
// Who may call it is decided in front of every route: handler/front.go.
type queryAPI struct {
	q   *query.Querier
	log *slog.Logger
	now func() time.Time
}

// newQueryAPI builds the API from the settings.
func newQueryAPI(s *config.Settings, tables *index.Tables, log *slog.Logger) *queryAPI {
	regions := map[string]string{}
	for _, l := range s.LogsAccounts {
		regions[l.Name] = l.Region
	}
	return &queryAPI{
		q: &query.Querier{Tables: tables, Limits: query.Limits{MaxDays: s.QueryMaxDays},
			FirstAccount: s.FirstLogsAccount().Name, Regions: regions},
		log: log,
		now: time.Now,
	}
}

// values reads the query string strictly (a malformed escape is a 400,
// not silently dropped) and takes out the handler's own parameter, the
// output format. The function key (code) was taken out in front.
func values(r *http.Request) (url.Values, string, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, "", &query.ParamError{Msg: "the query string is not valid URL encoding: " + err.Error()}
	}
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
		// than answer from half of it (the notice alone: whatever
		// wraps it is the log's).
		writeError(w, http.StatusConflict, query.ErrOldLayout.Error())
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
	if err := a.q.CheckLayout(r.Context()); err != nil {
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
	if err = a.q.CheckLayout(r.Context()); err != nil {
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
	if err = a.q.CheckLayout(r.Context()); err != nil {
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

// vaults serves GET /api/audit/vaults: {"vaults": ["kv1", …], "details":
// [{"name":"kv1","subscription":…,"resourceGroup":…,"accounts":[…],
// "regions":[…]}, …]}, every vault indexed so far, lower-cased and sorted;
// [] before the first. details says where each vault's logs come from: its
// subscription (from the blob path) and its logs accounts and their
// regions (from the settings).
func (a *queryAPI) vaults(w http.ResponseWriter, r *http.Request) {
	infos, err := a.q.VaultInfos(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	names := make([]string, len(infos))
	for i, v := range infos {
		names[i] = v.Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"vaults": names, "details": infos})
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
