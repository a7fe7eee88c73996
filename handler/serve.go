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
	query    *queryAPI // handler/httpquery.go
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
	a := &app{
		settings: s,
		log:      log,
		tables:   tables,
		ingester: &ingest.Ingester{
			Container:   clients.Blob.ServiceClient().NewContainerClient(s.LogsContainer),
			Tables:      tables,
			Log:         log,
			Concurrency: s.IngestConcurrency,
			// What retention would delete is not indexed.
			RetentionDays: s.RetentionDays,
		},
	}
	a.catchup = &catchup.Runner{
		Container:     a.ingester.Container,
		Tables:        tables,
		Ingester:      a.ingester,
		Log:           log,
		Hours:         s.CatchUpHours,
		MaxTries:      s.MaxBlobTries,
		RetentionDays: s.RetentionDays,
	}
	a.query = newQueryAPI(s, tables, log)
	return a, nil
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	// The host probes readiness with GET /; any answer counts.
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /BlobTrigger", a.blobTrigger)
	mux.HandleFunc("POST /CatchUp", a.catchUpTimer)
	mux.Handle("GET /api/audit/status", a.query.guard(a.status))
	a.query.routes(mux) // GET /api/audit/…: handler/httpquery.go
	return mux
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
	if err := checkListenAddr(*addr, s); err != nil { // handler/httpquery.go
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
	log.Info("listening", slog.String("addr", ln.Addr().String()),
		slog.Any("logs", s.Logs), slog.Any("index", s.Index), slog.String("container", s.LogsContainer))
	for _, name := range config.UnknownAccountSettings(os.Environ()) {
		log.Warn("setting not read: not one of the identity-based suffixes Functions defines (names are case-sensitive here)",
			slog.String("setting", name))
	}

	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No Read/WriteTimeout: an invocation streams a blob of any size;
		// the host's functionTimeout bounds it.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
