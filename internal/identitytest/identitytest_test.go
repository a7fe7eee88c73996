package identitytest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// claims decodes a JWT's payload.
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestManagedIdentityCredential drives the endpoint with azidentity's own
// ManagedIdentityCredential, as the handler does: the right client id gets
// a storage token, a wrong one the error the real endpoint gives.
func TestManagedIdentityCredential(t *testing.T) {
	e := Start(t)
	for _, kv := range e.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // read by azidentity when built and on each request
	}
	ctx := context.Background()
	scope := policy.TokenRequestOptions{Scopes: []string{Storage + "/.default"}}

	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(e.ClientID)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(t, tok.Token)
	if c["aud"] != Storage || c["appid"] != e.ClientID || !strings.HasPrefix(c["iss"].(string), "https://sts.windows.net/") {
		t.Errorf("claims %v", c)
	}
	if d := time.Until(tok.ExpiresOn); d < TokenLifetime-time.Minute || d > TokenLifetime {
		t.Errorf("token expires in %v, want about %v", d, TokenLifetime)
	}

	wrong, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(uuid())})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.GetToken(ctx, scope)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || !strings.Contains(err.Error(), "Unable to load the proper Managed Identity") {
		t.Errorf("wrong client id: err = %v, want AuthenticationFailedError quoting the endpoint", err)
	}

	reqs := e.Requests()
	if len(reqs) != 2 || reqs[0].Status != http.StatusOK || reqs[0].ClientID != e.ClientID || reqs[1].Status != http.StatusBadRequest {
		t.Errorf("requests %+v", reqs)
	}
}

func TestRefusals(t *testing.T) {
	e := Start(t)
	for _, tt := range []struct {
		name, query, header string
		want                int
	}{
		{"no header", "api-version=2019-08-01&resource=https://storage.azure.com&client_id=" + e.ClientID, "", 401},
		{"old api", "api-version=2017-09-01&resource=https://storage.azure.com&client_id=" + e.ClientID, e.Secret, 400},
		{"other resource", "api-version=2019-08-01&resource=https://vault.azure.net&client_id=" + e.ClientID, e.Secret, 400},
		{"system assigned", "api-version=2019-08-01&resource=https://storage.azure.com", e.Secret, 400},
		{"good", "api-version=2019-08-01&resource=https://storage.azure.com/&client_id=" + strings.ToUpper(e.ClientID), e.Secret, 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.URL+"?"+tt.query, nil)
		if tt.header != "" {
			req.Header.Set("X-IDENTITY-HEADER", tt.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}
