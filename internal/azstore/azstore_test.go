package azstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/identitytest"
)

// A SAS signature must not reach logs through a transport error.
func TestClassifyRedactsSASFromTransportErrors(t *testing.T) {
	acct, err := config.ParseConnectionString("BlobEndpoint=http://127.0.0.1:1/acct;TableEndpoint=http://127.0.0.1:1/acct;SharedAccessSignature=sv=2024&sig=SECRETSIG")
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int32) { maxRetries = n }(maxRetries)
	maxRetries = -1 // azcore: -1 means no retries
	tc, err := NewTableClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tc.NewClient("t").GetEntity(context.Background(), "p", "r", nil)
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	got := Classify(err)
	if !errors.Is(got, ErrTransient) {
		t.Errorf("connection refused is not transient: %v", got)
	}
	if strings.Contains(got.Error(), "SECRETSIG") {
		t.Errorf("signature in error: %v", got)
	}
}

func TestClassifyMeanings(t *testing.T) {
	respErr := func(status int, code string) error {
		return &azcore.ResponseError{StatusCode: status, ErrorCode: code}
	}
	for _, tt := range []struct {
		err  error
		want error
	}{
		{context.Canceled, context.Canceled},
		{respErr(404, "TableNotFound"), ErrTableNotFound},
		{respErr(404, "TableNotFound"), ErrNotFound},
		{respErr(404, "ResourceNotFound"), ErrNotFound},
		{respErr(409, "TableBeingDeleted"), ErrTransient},
		{respErr(400, "PropertyValueTooLarge"), ErrRejected},
		{respErr(400, "EntityTooLarge"), ErrRejected},
		{respErr(413, "RequestBodyTooLarge"), ErrRejected},
		{respErr(403, "AuthorizationFailure"), ErrAuth}, // a role missing: retried once it is granted
		{respErr(400, "SomethingNew"), nil},
		{fmt.Errorf("plain"), nil},
	} {
		got := Classify(tt.err)
		if tt.want != nil && !errors.Is(got, tt.want) {
			t.Errorf("Classify(%v) = %v", tt.err, got)
		}
		if tt.want == nil && (errors.Is(got, ErrTransient) || errors.Is(got, ErrNotFound) || errors.Is(got, ErrRejected)) {
			t.Errorf("Classify(%v) = %v, want unclassified", tt.err, got)
		}
	}
}

// A 401 or 403 from the service is ErrAuth, hence worth a retry, and names
// the account's setting and what to check.
func TestRefusedIsAuthErrorNamingTheSetting(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ms-error-code", "AuthorizationPermissionMismatch")
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	for _, tt := range []struct {
		name string
		acct config.Account
		want string
	}{
		{"key", config.Account{Setting: "AuditLogsStorage", Name: "acct", Key: config.DevAccountKey, BlobURL: srv.URL + "/acct"}, "AccountKey of AuditLogsStorage"},
		{"sas", config.Account{Setting: "AuditLogsStorage", SAS: "sv=1&sig=SECRETSIG", BlobURL: srv.URL + "/acct"}, "SharedAccessSignature of AuditLogsStorage"},
	} {
		bc, err := NewBlobClient(tt.acct)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bc.ServiceClient().NewContainerClient("c").GetProperties(context.Background(), nil)
		var ae *AuthError
		var re *azcore.ResponseError
		if !errors.As(err, &ae) || !errors.As(err, &re) || re.ErrorCode != "AuthorizationPermissionMismatch" {
			t.Fatalf("%s: err = %v, want an *AuthError holding the service's error", tt.name, err)
		}
		if !errors.Is(Classify(err), ErrAuth) || !IsTransient(err) {
			t.Errorf("%s: %v is not ErrAuth and transient", tt.name, err)
		}
		if ae.Setting != "AuditLogsStorage" || !strings.Contains(ae.Check, tt.want) || strings.Contains(err.Error(), "SECRETSIG") {
			t.Errorf("%s: %q", tt.name, err)
		}
	}
	// The same from a client built elsewhere: still ErrAuth, without a setting.
	err := Classify(&azcore.ResponseError{StatusCode: http.StatusUnauthorized})
	if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrTransient) {
		t.Errorf("bare 401: %v", err)
	}
}

// A managed identity that hands out no token is ErrAuth naming the
// settings to check: a client id the app does not have, an identity
// endpoint that does not answer.
func TestManagedIdentityFailureIsAuthError(t *testing.T) {
	e := identitytest.Start(t)
	unreachable := "http://127.0.0.1:1/msi/token" // nothing listens on port 1
	for _, tt := range []struct {
		name, endpoint, clientID, want string
	}{
		{"wrong client id", e.URL, "00000000-0000-4000-8000-000000000000", "Unable to load the proper Managed Identity"},
		{"endpoint down", unreachable, e.ClientID, "connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("IDENTITY_ENDPOINT", tt.endpoint) // azidentity reads these when built and on each request
			t.Setenv("IDENTITY_HEADER", e.Secret)
			acct := config.Account{Setting: "AuditIndexStorage", Identity: true, Credential: "managedidentity", ClientID: tt.clientID,
				TableURL: "https://127.0.0.1:1/acct"} // never reached: the token comes first
			tc, err := NewTableClient(acct)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = tc.NewClient("t").GetEntity(context.Background(), "p", "r", nil)
			var ae *AuthError
			if !errors.As(err, &ae) || !IsTransient(err) {
				t.Fatalf("err = %v, want an *AuthError", err)
			}
			if ae.Setting != "AuditIndexStorage" || !strings.Contains(ae.Check, "AuditIndexStorage__clientId") || !strings.Contains(ae.Check, "IDENTITY_ENDPOINT") ||
				!strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v", err)
			}
			t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// Connections to an account are kept for the next requests, as many as
// kvaudit has in flight: azcore's default keeps 10, so a query page's
// point reads (16 at a time) dialled again on every wave.
func TestConnectionsAreKeptForReuse(t *testing.T) {
	const inFlight = 24 // above azcore's 10, within idleConnsPerHost
	var (
		mu      sync.Mutex
		dialled int
		waiting int
		all     = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold each request until the whole wave is in, so that the wave
		// really has inFlight connections open at once.
		mu.Lock()
		if waiting++; waiting == inFlight {
			close(all)
		}
		in := all
		mu.Unlock()
		select {
		case <-in:
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		io.WriteString(w, `{"PartitionKey":"p","RowKey":"r"}`) //nolint:errcheck // a test server
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialled++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	svc, err := NewTableClient(config.Account{Setting: "AuditIndexStorage", Name: "acct", Key: config.DevAccountKey, TableURL: srv.URL + "/acct"})
	if err != nil {
		t.Fatal(err)
	}
	client := svc.NewClient("t")
	for wave := range 2 {
		mu.Lock()
		waiting, all = 0, make(chan struct{})
		mu.Unlock()
		var wg sync.WaitGroup
		errs := make(chan error, inFlight)
		for range inFlight {
			wg.Go(func() {
				if _, err := client.GetEntity(context.Background(), "p", "r", nil); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("wave %d: %v", wave, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if dialled != inFlight {
		t.Errorf("two waves of %d requests dialled %d connections, want %d (the second wave reusing the first's)", inFlight, dialled, inFlight)
	}
}

// The clients New builds give up a try after the setting's try timeout,
// the response body included: a body that stalls fails as a deadline
// (under the default 60 s it would end short after the server's 30 s).
func TestNewAppliesTryTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Header().Set("x-ms-blob-type", "AppendBlob")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "partial") //nolint:errcheck // a test server
		w.(http.Flusher).Flush()
		select { // the rest never comes, until the client gives up
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	defer srv.Close()
	acct := config.Account{Setting: config.SettingLogsStorage, Name: "acct", Key: config.DevAccountKey, BlobURL: srv.URL + "/acct", TableURL: srv.URL + "/acct"}
	clients, err := New(&config.Settings{Logs: acct, Index: acct, TryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := clients.Blob.DownloadStream(context.Background(), "c", "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reading a stalled body: %v, want the try's deadline", err)
	}
}
