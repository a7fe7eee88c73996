package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/identitytest"
	"github.com/kvaudit/kvaudit/internal/index"
)

// TestIdentityBasedSettings runs the handler binary as the Functions host
// would in Azure with identity everywhere: its environment holds only the
// identity-based settings (service URIs, credential=managedidentity, the
// user-assigned identity's client id), an App Service identity endpoint
// (identitytest) and the certificate of an Azurite that serves HTTPS and
// checks bearer tokens (`--oauth basic`). No key reaches the handler.
//
// With the right client id it indexes a blob and answers queries. With a
// client id the endpoint refuses, or an endpoint that does not answer, the
// invocation is a 503 the host retries, naming the setting to check, the
// query API a 503 saying the same, and nothing is indexed: no row, no
// checkpoint.
func TestIdentityBasedSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and starts an Azurite of its own")
	}
	azuritetest.Require(t) // skips when Azurite is not installed
	az, err := azuritetest.Start(azuritetest.Options{OAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { az.Stop() })
	rig := &identityRig{t: t, az: az, idp: identitytest.Start(t), bin: buildHandler(t)}
	rig.seedClients()
	data := samples(t)

	// Reading the events back needs the vault's records in the window.
	wantEvents := 0
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if bytes.Contains(line, []byte("VAULTS/TESTPERMISSIONVAULT")) && bytes.Contains(line, []byte(`"time":"2024-04-`)) {
			wantEvents++
		}
	}
	const events = "/api/audit/events?vault=testpermissionvault&from=2024-04-01T00:00:00Z&to=2024-04-15T00:00:00Z&limit=1000"
	wrongID := "0badc0de-0000-4000-8000-000000000000"

	t.Run("ingests and answers", func(t *testing.T) {
		h := rig.start(t, "ok", rig.idp.ClientID, rig.idp.ClientID, rig.idp.URL, data)
		if n := len(rig.idp.Requests()); n != 0 {
			t.Fatalf("start-up asked the identity endpoint %d times; it must do no network I/O", n)
		}
		status, resp := h.invoke(data)
		if status != http.StatusOK || !strings.Contains(resp.Logs[0], fmt.Sprintf("indexed %d records", bytes.Count(data, []byte("\n")))) {
			t.Fatalf("BlobTrigger: %d %q\n%s", status, resp.Logs, h.stderr())
		}
		code, body := h.get(events)
		var page struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &page); code != http.StatusOK || err != nil || len(page.Events) != wantEvents {
			t.Fatalf("events: %d %v: %d events, want %d\n%s", code, err, len(page.Events), wantEvents, body)
		}
		reqs := rig.idp.Requests()
		for _, r := range reqs {
			if r.Status != http.StatusOK || r.ClientID != rig.idp.ClientID || r.Resource != identitytest.Storage {
				t.Errorf("identity endpoint was asked %+v", r)
			}
		}
		if len(reqs) == 0 {
			t.Error("no token was asked for: the handler did not use the identity")
		}
	})

	for _, tt := range []struct {
		name               string
		logsID, indexID    string
		endpoint           string
		triggerNames       []string // in the invocation's Logs
		queryCode          int
		queryNames         string // in the query API's error
		statusCode         int    // of /api/audit/status
		endpointSawWrongID bool
		issuer             string // of the tokens handed out, "" for Entra's
	}{
		{
			// The logs account's client id has a typo; the index's is right.
			name: "wrong logs client id", logsID: wrongID, indexID: rig.idp.ClientID, endpoint: rig.idp.URL,
			triggerNames: []string{"AuditLogsStorage__clientId", "Unable to load the proper Managed Identity"},
			queryCode:    http.StatusOK, endpointSawWrongID: true,
			statusCode: http.StatusOK, // nothing indexed: no vault's blobs to list
		},
		{
			// One identity everywhere, with the wrong client id.
			name: "wrong client id", logsID: wrongID, indexID: wrongID, endpoint: rig.idp.URL,
			triggerNames: []string{"AuditIndexStorage__clientId", "Unable to load the proper Managed Identity"},
			queryCode:    http.StatusServiceUnavailable, queryNames: "AuditIndexStorage__clientId", endpointSawWrongID: true,
			statusCode: http.StatusServiceUnavailable,
		},
		{
			name: "identity endpoint down", logsID: rig.idp.ClientID, indexID: rig.idp.ClientID, endpoint: closedEndpoint(t),
			triggerNames: []string{"AuditIndexStorage", "IDENTITY_ENDPOINT", "connection refused"},
			queryCode:    http.StatusServiceUnavailable, queryNames: "IDENTITY_ENDPOINT",
			statusCode: http.StatusServiceUnavailable,
		},
		{
			// Tokens come, and storage refuses them: in Azure, an identity
			// without its role on the account (Azurite checks no roles; it
			// refuses a token from an issuer it does not trust alike).
			name: "storage refuses the token", logsID: rig.idp.ClientID, indexID: rig.idp.ClientID, endpoint: rig.idp.URL,
			issuer:       "https://issuer.invalid/",
			triggerNames: []string{"AuditIndexStorage__tableServiceUri", "Storage Table Data Contributor"},
			queryCode:    http.StatusServiceUnavailable, queryNames: "Storage Table Data Contributor",
			statusCode: http.StatusServiceUnavailable,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rig.idp.Requests())
			rig.idp.SetIssuer(tt.issuer)
			t.Cleanup(func() { rig.idp.SetIssuer("") })
			h := rig.start(t, strings.ReplaceAll(tt.name, " ", ""), tt.logsID, tt.indexID, tt.endpoint, data)
			status, resp := h.invoke(data)
			logs := strings.Join(resp.Logs, "\n")
			if status != http.StatusServiceUnavailable {
				t.Fatalf("BlobTrigger: %d %q, want 503 for the host to retry\n%s", status, resp.Logs, h.stderr())
			}
			for _, want := range tt.triggerNames {
				if !strings.Contains(logs, want) {
					t.Errorf("BlobTrigger Logs do not name %q:\n%s", want, logs)
				}
			}
			if n := rig.indexRows(h.prefix); n != 0 {
				t.Errorf("%d index rows after a refused ingest, want none (no rows, no checkpoint)", n)
			}

			code, body := h.get(events)
			t.Logf("BlobTrigger %d, Logs: %s", status, logs)
			t.Logf("events: %d %s", code, body)
			if code != tt.queryCode {
				t.Fatalf("events: %d, want %d\n%s", code, tt.queryCode, body)
			}
			if code != http.StatusOK {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, tt.queryNames) {
					t.Errorf("query error %s does not name %s", body, tt.queryNames)
				}
			}
			// The status says why, in a line, and names what to check;
			// the SDK's and the identity endpoint's words are the log's.
			code, body = h.get("/api/audit/status")
			t.Logf("status: %d %s", code, body)
			if code != tt.statusCode {
				t.Fatalf("status: %d, want %d\n%s", code, tt.statusCode, body)
			}
			if code != http.StatusOK {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, "Storage") || !strings.Contains(e.Error, "check") {
					t.Errorf("status error %s does not say what to check", body)
				}
				for _, leak := range []string{"RESPONSE", "://", "\n", "127.0.0.1", "ManagedIdentityCredential"} {
					if strings.Contains(e.Error, leak) {
						t.Errorf("status error holds %q: %s", leak, e.Error)
					}
				}
			}
			if tt.endpointSawWrongID {
				refused := false
				for _, r := range rig.idp.Requests()[before:] {
					refused = refused || r.ClientID == wrongID && r.Status == http.StatusBadRequest
				}
				if !refused {
					t.Errorf("the identity endpoint never refused %s: %+v", wrongID, rig.idp.Requests()[before:])
				}
			}
		})
	}
}

// TestIdentityTwoLogsAccounts is TestIdentityBasedSettings with two logs
// accounts (issue 17): the second, logstwo, another Azurite over HTTPS
// checking bearer tokens, reached by identity alone
// (AuditLogsStorage_logstwo__blobServiceUri, __credential, __clientId). A
// BlobCreated event of the second account is read with the identity and
// answered from the one index; with a wrong client id on the second
// account only, its event is a 503 naming that setting, and the first
// account's blobs are still indexed.
func TestIdentityTwoLogsAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and starts two Azurites of its own")
	}
	azuritetest.Require(t)
	one, err := azuritetest.Start(azuritetest.Options{OAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { one.Stop() })
	two, err := azuritetest.Start(azuritetest.Options{OAuth: true, Account: "logstwo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { two.Stop() })
	// The handler trusts both emulators' certificates, and nothing else.
	certs := filepath.Join(t.TempDir(), "roots.pem")
	var pem []byte
	for _, f := range []string{one.CertFile, two.CertFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	if err := os.WriteFile(certs, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	idp := identitytest.Start(t)
	bin := buildHandler(t)
	data := samples(t)
	want := bytes.Count(data, []byte("\n"))
	seed := &identityRig{t: t, az: two}
	seed.seedClients()
	first := &identityRig{t: t, az: one}
	first.seedClients()

	for _, tt := range []struct {
		name    string
		twoID   string
		status  int
		logs    string
		indexed int // rows in Events after both accounts' events
	}{
		{name: "both read by identity", twoID: idp.ClientID, status: http.StatusOK, logs: fmt.Sprintf("indexed %d records", want), indexed: 2 * want},
		{name: "wrong client id on the second", twoID: "0badc0de-0000-4000-8000-000000000000", status: http.StatusServiceUnavailable,
			logs: config.LogsAccountSetting("logstwo") + "__clientId", indexed: want},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.ReplaceAll(tt.name, " ", "")
			container := "logs-" + strings.ToLower(id)
			prefix := "id2" + id
			for _, r := range []*identityRig{first, seed} {
				if _, err := r.blobs.CreateContainer(context.Background(), container, nil); err != nil {
					t.Fatal(err)
				}
				ab := r.blobs.ServiceClient().NewContainerClient(container).NewAppendBlobClient(sampleBlob)
				if _, err := ab.Create(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
				if _, err := ab.AppendBlock(context.Background(), streaming.NopCloser(bytes.NewReader(data)), nil); err != nil {
					t.Fatal(err)
				}
			}
			port := freePort(t)
			cmd := exec.Command(bin)
			two := config.LogsAccountSetting("logstwo")
			cmd.Env = []string{
				"AuditLogsStorage__blobServiceUri=" + one.BlobURL,
				"AuditLogsStorage__credential=managedidentity",
				"AuditLogsStorage__clientId=" + idp.ClientID,
				config.SettingLogsAccounts + "=logstwo:northeurope",
				two + "__blobServiceUri=" + seed.az.BlobURL,
				two + "__credential=managedidentity",
				two + "__clientId=" + tt.twoID,
				"AuditIndexStorage__tableServiceUri=" + one.TableURL,
				"AuditIndexStorage__credential=managedidentity",
				"AuditIndexStorage__clientId=" + idp.ClientID,
				config.SettingLogsContainer + "=" + container,
				config.SettingTablePrefix + "=" + prefix,
				config.SettingCustomPort + "=" + strconv.Itoa(port),
				config.SettingRetentionDays + "=36600",
				"IDENTITY_ENDPOINT=" + idp.URL,
				"IDENTITY_HEADER=" + idp.Secret,
				"SSL_CERT_FILE=" + certs,
			}
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			h := &identityHandler{t: t, url: "http://127.0.0.1:" + strconv.Itoa(port), container: container, blobURL: one.BlobURL, out: out}
			waitReady(t, h, exited)
			for i, acct := range []*azuritetest.Azurite{seed.az, one} {
				req, err := hosttest.NewEventGridRequest(context.Background(), h.url, hosttest.EventGridInvocation{
					Name: sampleBlob, Container: container, AccountURL: acct.BlobURL, ContentLength: int64(len(data))})
				if err != nil {
					t.Fatal(err)
				}
				status, resp, err := hosttest.Do(http.DefaultClient, req)
				if err != nil && (status == 0 || resp.Logs == nil) {
					t.Fatalf("%v\n%s", err, h.stderr())
				}
				wantStatus, wantLogs := tt.status, tt.logs
				if i == 1 { // the first account: always readable
					wantStatus, wantLogs = http.StatusOK, fmt.Sprintf("indexed %d records", want)
				}
				if status != wantStatus || !strings.Contains(strings.Join(resp.Logs, "\n"), wantLogs) {
					t.Fatalf("event of %s: %d %q, want %d naming %q\n%s", acct.Account, status, resp.Logs, wantStatus, wantLogs, h.stderr())
				}
			}
			if n := first.tableRows(index.NewTables(first.tables, prefix).Name(index.TableEvents)); n != tt.indexed {
				t.Errorf("%d event rows, want %d", n, tt.indexed)
			}
		})
	}
}

// tableRows counts the rows of one table; a missing table counts none.
func (r *identityRig) tableRows(table string) int {
	r.t.Helper()
	n := 0
	pager := r.tables.NewClient(table).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			break
		}
		if err != nil {
			r.t.Fatal(err)
		}
		n += len(page.Entities)
	}
	return n
}

// identityRig is the Azurite, the identity endpoint and the handler binary
// the subtests share, and the test's own shared-key clients for seeding
// and counting.
type identityRig struct {
	t      *testing.T
	az     *azuritetest.Azurite
	idp    *identitytest.Endpoint
	bin    string
	blobs  *azblob.Client
	tables *aztables.ServiceClient
}

func (r *identityRig) seedClients() {
	opts := azcore.ClientOptions{Transport: r.az.HTTPClient(), Retry: policy.RetryOptions{MaxRetries: -1}}
	var err error
	if r.blobs, err = azblob.NewClientFromConnectionString(r.az.ConnectionString, &azblob.ClientOptions{ClientOptions: opts}); err != nil {
		r.t.Fatal(err)
	}
	if r.tables, err = aztables.NewServiceClientFromConnectionString(r.az.ConnectionString, &aztables.ClientOptions{ClientOptions: opts}); err != nil {
		r.t.Fatal(err)
	}
}

// indexRows counts the rows of every index table under prefix; a table
// that does not exist counts none.
func (r *identityRig) indexRows(prefix string) int {
	r.t.Helper()
	n := 0
	tables := index.NewTables(r.tables, prefix)
	for _, short := range index.AllTables {
		pager := r.tables.NewClient(tables.Name(short)).NewListEntitiesPager(nil)
		for pager.More() {
			page, err := pager.NextPage(context.Background())
			var re *azcore.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
				break
			}
			if err != nil {
				r.t.Fatal(err)
			}
			n += len(page.Entities)
		}
	}
	return n
}

// identityHandler is one run of the handler binary.
type identityHandler struct {
	t         *testing.T
	url       string
	container string
	prefix    string
	blobURL   string
	out       *lockedBuffer
}

// start seeds the sample blob in a container of its own and runs the
// handler with identity-based settings only: logsID and indexID are the
// client ids of the two accounts, endpoint the IDENTITY_ENDPOINT.
func (r *identityRig) start(t *testing.T, id, logsID, indexID, endpoint string, data []byte) *identityHandler {
	t.Helper()
	h := &identityHandler{t: t, container: "logs-" + strings.ToLower(id), prefix: "id" + id, blobURL: r.az.BlobURL, out: &lockedBuffer{}}
	ctx := context.Background()
	if _, err := r.blobs.CreateContainer(ctx, h.container, nil); err != nil {
		t.Fatal(err)
	}
	ab := r.blobs.ServiceClient().NewContainerClient(h.container).NewAppendBlobClient(sampleBlob)
	if _, err := ab.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data)), nil); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	cmd := exec.Command(r.bin)
	cmd.Env = []string{
		"AuditLogsStorage__blobServiceUri=" + r.az.BlobURL,
		"AuditLogsStorage__queueServiceUri=" + r.az.QueueURL,
		"AuditLogsStorage__credential=managedidentity",
		"AuditLogsStorage__clientId=" + logsID,
		"AuditIndexStorage__tableServiceUri=" + r.az.TableURL,
		"AuditIndexStorage__blobServiceUri=" + r.az.BlobURL,
		"AuditIndexStorage__credential=managedidentity",
		"AuditIndexStorage__clientId=" + indexID,
		config.SettingLogsContainer + "=" + h.container,
		config.SettingTablePrefix + "=" + h.prefix,
		config.SettingCustomPort + "=" + strconv.Itoa(port),
		config.SettingRetentionDays + "=36600", // the samples are from 2024
		"IDENTITY_ENDPOINT=" + endpoint,
		"IDENTITY_HEADER=" + r.idp.Secret,
		"SSL_CERT_FILE=" + r.az.CertFile, // the only root the handler trusts
	}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	h.url = "http://127.0.0.1:" + strconv.Itoa(port)
	// Ready when GET / answers, as the host probes it.
	for try := 0; ; try++ {
		resp, err := http.Get(h.url + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("handler exited at start:\n%s", h.stderr())
		case <-time.After(50 * time.Millisecond):
		}
		if try == 400 {
			t.Fatalf("handler not answering on %s:\n%s", h.url, h.stderr())
		}
	}
	return h
}

// invoke sends the host's blob-trigger invocation for the sample blob.
func (h *identityHandler) invoke(data []byte) (int, funchost.Response) {
	h.t.Helper()
	req, err := hosttest.NewBlobRequest(context.Background(), h.url, hosttest.BlobInvocation{
		Name: sampleBlob, Container: h.container, AccountURL: h.blobURL,
		Content: bytes.NewReader(data), Binary: true, ContentLength: int64(len(data)),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	status, resp, err := hosttest.Do(http.DefaultClient, req)
	if err != nil && (status == 0 || resp.Logs == nil) {
		h.t.Fatalf("%v\n%s", err, h.stderr())
	}
	return status, resp
}

func (h *identityHandler) get(path string) (int, []byte) {
	h.t.Helper()
	resp, err := http.Get(h.url + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, body
}

func (h *identityHandler) stderr() string { return h.out.String() }

// buildHandler builds this package's binary, as `make build` does.
func buildHandler(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "handler")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// closedEndpoint is an identity endpoint URL on a loopback port nothing
// listens on: connections are refused.
func closedEndpoint(t *testing.T) string {
	u := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t)), Path: "/msi/token"}
	return u.String()
}

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
