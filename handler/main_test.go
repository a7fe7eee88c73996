package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// testApp is the handler serving over loopback HTTP against a private
// container and table set of the shared Azurite, as the host would see it.
type testApp struct {
	t   testing.TB
	app *app
	srv *httptest.Server
	cc  *container.Client
}

func newTestApp(t testing.TB, extra map[string]string) *testApp {
	t.Helper()
	az := azuritetest.Require(t)
	var b [5]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%x", b)
	env := map[string]string{
		config.SettingLogsStorage:   az.ConnectionString,
		config.SettingLogsContainer: "logs-" + id,
		config.SettingTablePrefix:   "h" + id,
	}
	for k, v := range extra {
		env[k] = v
	}
	s, err := config.FromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := newApp(s, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, a)
	bc, err := azstore.NewBlobClient(s.Logs)
	if err != nil {
		t.Fatal(err)
	}
	cc := bc.ServiceClient().NewContainerClient(s.LogsContainer)
	if _, err := cc.Create(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return &testApp{t: t, app: a, srv: srv, cc: cc}
}

// startServer serves a on a loopback port as runServe does: the same
// server settings, the same listener.
func startServer(t testing.TB, a *app) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = a.newServer()
	srv.Listener = jsonErrorsListener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// put creates name as an append blob holding data.
func (ta *testApp) put(name string, data []byte) {
	ta.t.Helper()
	ab := ta.cc.NewAppendBlobClient(name)
	if _, err := ab.Create(context.Background(), nil); err != nil {
		ta.t.Fatal(err)
	}
	ta.appendTo(name, data)
}

func (ta *testApp) appendTo(name string, data []byte) {
	ta.t.Helper()
	ab := ta.cc.NewAppendBlobClient(name)
	for len(data) > 0 {
		n := min(len(data), 4<<20)
		if _, err := ab.AppendBlock(context.Background(), streaming.NopCloser(bytes.NewReader(data[:n])), nil); err != nil {
			ta.t.Fatal(err)
		}
		data = data[n:]
	}
}

// countRows counts the rows of one index table.
func (ta *testApp) countRows(short string) int {
	ta.t.Helper()
	n := 0
	pager := ta.app.ingester.Tables.Client(short).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			ta.t.Fatal(err)
		}
		n += len(page.Entities)
	}
	return n
}

func (ta *testApp) get(path string) (int, map[string]any) {
	ta.t.Helper()
	resp, err := http.Get(ta.srv.URL + path)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		ta.t.Fatalf("GET %s: body is not JSON: %v", path, err)
	}
	return resp.StatusCode, body
}

// handler -h, -help and --help print the whole usage, every subcommand,
// as handler help does, and exit 0: not serve's flags, serve being only
// the default command.
func TestHelpPrintsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}, {"--help"}, {"--h"}} {
		var stdout, stderr bytes.Buffer
		code := run(args, nil, &stdout, &stderr)
		if code != 0 || stdout.String() != usage || stderr.Len() != 0 {
			t.Errorf("handler %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage", args[0], code, stdout.String(), stderr.String())
		}
	}
	for _, cmd := range []string{"[serve]", "parse", "query", "backfill", "retention", "status", "help"} {
		if !strings.Contains(usage, "\n  handler "+cmd) {
			t.Errorf("the usage does not name handler %s", cmd)
		}
	}
	// Flags after serve's own are serve's: its help is its flags.
	var stderr bytes.Buffer
	if code := run([]string{"serve", "-h"}, nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "-port") {
		t.Errorf("handler serve -h: exit %d, %q", code, stderr.String())
	}
}
