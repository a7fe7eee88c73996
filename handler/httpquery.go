package main

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
)

// queryAPI serves GET /api/audit/… (the HttpQuery function, forwarded by
// the host). Stub until the query issue lands.
type queryAPI struct{}

func newQueryAPI(s *config.Settings, tables *index.Tables, log *slog.Logger) *queryAPI {
	return &queryAPI{}
}

func (q *queryAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("/api/audit/{path...}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API path: "+r.URL.Path)
	})
}

func runQuery(args []string, stdout, stderr io.Writer) int {
	_, _ = io.WriteString(stderr, "handler query: not implemented yet\n")
	return 2
}
