package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/alert"
	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/catchup"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
)

// app holds what every route needs, built once at start.
type app struct {
	settings *config.Settings
	log      *slog.Logger
	tables   *index.Tables
	ingester *ingest.Ingester
	catchup  *catchup.Runner
	query    *queryAPI     // handler/httpquery.go
	ui       *webUI        // handler/ui.go
	alerts   *alert.Engine // handler/alerts.go
}

// newApp builds clients from the settings. It does no network I/O: start-up
// is paid on every scale-out, and the host's readiness probe must be
// answered first.
func newApp(s *config.Settings, log *slog.Logger) (*app, error) {
	clients, err := azstore.New(s)
	if err != nil {
		return nil, err
	}
	tables := index.NewTables(clients.Table, s.TablePrefix)
	first := s.FirstLogsAccount()
	others := map[string]*container.Client{}
	regions := map[string]string{}
	for _, l := range s.LogsAccounts {
		regions[l.Name] = l.Region
		if !l.First {
			others[l.Name] = clients.Logs[l.Name].ServiceClient().NewContainerClient(s.LogsContainer)
		}
	}
	a := &app{
		settings: s,
		log:      log,
		tables:   tables,
		ingester: &ingest.Ingester{
			Container:    clients.Blob.ServiceClient().NewContainerClient(s.LogsContainer),
			Accounts:     others,
			FirstAccount: first.Name,
			Tables:       tables,
			Log:          log,
			Concurrency:  s.IngestConcurrency,
			// What retention would delete is not indexed.
			RetentionDays: s.RetentionDays,
		},
	}
	a.catchup = &catchup.Runner{
		Regions:       regions,
		Tables:        tables,
		Ingester:      a.ingester,
		Log:           log,
		Hours:         s.CatchUpHours,
		MaxTries:      s.MaxBlobTries,
		RetentionDays: s.RetentionDays,
	}
	a.query = newQueryAPI(s, tables, log)
	a.ui = newWebUI()
	if a.alerts, err = newAlerts(s, tables, log); err != nil {
		return nil, err
	}
	return a, nil
}

// route is one thing the handler serves.
type route struct {
	method string // GET routes answer HEAD only where headOK says so
	path   string
	h      http.HandlerFunc
	// params says the handler reads query parameters itself, and refuses
	// those it does not know; a route without accepts none.
	params bool
	// headOK lets HEAD through to a GET route, answered as GET without a
	// body; elsewhere HEAD is a 405 (see openapi.json).
	headOK bool
	// keepsCode hands the request's ?code= to the route (see keptCode):
	// only the web page, which repeats it in its asset URLs.
	keepsCode bool
	// jsonBody: the route takes only Content-Type application/json, as
	// the host's invocations are (415 otherwise; see handler/front.go).
	jsonBody bool
}

// routeTable is every route, in the order the 404 message lists them.
func (a *app) routeTable() []route {
	return []route{
		// The host probes readiness with GET /; any answer counts.
		{method: http.MethodGet, path: "/", h: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}, headOK: true},
		{method: http.MethodPost, path: "/BlobTrigger", h: a.blobTrigger, jsonBody: true},
		{method: http.MethodPost, path: "/EventGridTrigger", h: a.eventGridTrigger, jsonBody: true},
		{method: http.MethodPost, path: "/CatchUp", h: a.catchUpTimer, jsonBody: true},
		{method: http.MethodGet, path: pathEvents, h: a.query.events, params: true},
		{method: http.MethodGet, path: pathStats, h: a.query.stats, params: true},
		{method: http.MethodGet, path: pathDetections, h: a.query.detections, params: true},
		{method: http.MethodGet, path: pathStatus, h: a.status},
		{method: http.MethodGet, path: pathOpenAPI, h: a.query.openAPI},
		{method: http.MethodGet, path: pathVaults, h: a.query.vaults},
		{method: http.MethodGet, path: pathAlerts, h: a.alertsAPI, params: true},
		{method: http.MethodGet, path: pathUI, h: a.ui.page, keepsCode: true},
		{method: http.MethodGet, path: pathUIScript, h: a.ui.asset},
		{method: http.MethodGet, path: pathUIStyle, h: a.ui.asset},
	}
}

// newServer is the HTTP server of the handler, without its listener,
// which must be wrapped by [jsonErrorsListener].
func (a *app) newServer() *http.Server {
	return &http.Server{
		Handler:           a.routes(),
		ConnContext:       withConn,       // handler/respond.go
		ConnState:         trackConnState, // likewise
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No Read/WriteTimeout: an invocation streams a blob of any size;
		// the host's functionTimeout bounds it.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// routes is the handler of every request: see [front].
func (a *app) routes() http.Handler {
	return newFront(a.routeTable(), requiredKey(a.settings), localOnly(a.settings))
}

func runServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "TCP port on 127.0.0.1 (default $"+config.SettingCustomPort+")")
	addr := fs.String("addr", "127.0.0.1", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return 1
	}
	if *port == 0 {
		*port = s.Port
	}
	if *port == 0 {
		fmt.Fprintf(stderr, "handler: no port: the Functions host sets %s; when running standalone pass -port N\n", config.SettingCustomPort)
		return 2
	}
	if err := checkListenAddr(*addr, s); err != nil { // handler/front.go
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: s.LogLevel}))
	a, err := newApp(s, log)
	if err != nil {
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(stderr, "handler: cannot listen: %v\n", err)
		return 1
	}
	// "localhost" is whatever the resolver says: check what was bound.
	if err := checkListenAddr(ln.Addr().(*net.TCPAddr).IP.String(), s); err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "handler: %v (-addr %s)\n", err, *addr)
		return 2
	}
	log.Info("listening", slog.String("addr", ln.Addr().String()), slog.Bool("hostMode", hostMode(s)),
		slog.Bool("keyRequired", requiredKey(s) != nil), slog.Bool("loopbackHostOnly", localOnly(s)),
		slog.Any("logs", s.Logs), slog.Any("index", s.Index), slog.String("container", s.LogsContainer),
		slog.String("alerts", s.Alerts.String()), slog.Any("alertKinds", a.alerts.Tuning.Enabled()))
	if hostMode(s) && s.APIKey != "" {
		log.Warn(config.SettingAPIKey + " is ignored under the Functions host: the host checks function keys, and the handler listens on loopback for the host alone")
	}
	for _, name := range config.UnknownAccountSettings(os.Environ()) {
		log.Warn("setting not read: not one of the identity-based suffixes Functions defines (names are case-sensitive here)",
			slog.String("setting", name))
	}

	srv := a.newServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(jsonErrorsListener(ln)) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-errc:
		log.Error("server stopped", slog.String("error", err.Error()))
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", slog.String("error", err.Error()))
	}
	return 0
}
