package azuritetest

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/kvaudit/kvaudit/internal/identitytest"
)

// staticToken is a TokenCredential handing out one token.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestHTTPSOAuth checks an Azurite started with HTTPS and OAuth: its
// certificate is trusted through HTTPClient and not otherwise, the account
// key still works, a bearer token of the right shape is accepted and an
// expired one refused, and Stop removes the certificate.
func TestHTTPSOAuth(t *testing.T) {
	Require(t)
	az, err := Start(Options{OAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer az.Stop()
	if !strings.HasPrefix(az.BlobURL, "https://127.0.0.1:") || !strings.HasPrefix(az.TableURL, "https://") ||
		!strings.Contains(az.ConnectionString, "DefaultEndpointsProtocol=https;") {
		t.Fatalf("URLs are not https: %q %q", az.BlobURL, az.ConnectionString)
	}
	pem, err := os.ReadFile(az.CertFile)
	if err != nil || !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Fatalf("CertFile %q: %v", az.CertFile, err)
	}
	ctx := context.Background()
	opts := azcore.ClientOptions{Transport: az.HTTPClient(), Retry: policy.RetryOptions{MaxRetries: -1}}

	// The account key, over TLS.
	keyed, err := azblob.NewClientFromConnectionString(az.ConnectionString, &azblob.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyed.CreateContainer(ctx, "tlskey", nil); err != nil {
		t.Fatalf("shared key over HTTPS: %v\n%s", err, az.Log())
	}

	// A bearer token for storage.
	good := staticToken(identitytest.Token(identitytest.Storage, time.Hour))
	bearer, err := azblob.NewClient(az.BlobURL+"/", good, &azblob.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bearer.ServiceClient().NewContainerClient("tlskey").GetProperties(ctx, nil); err != nil {
		t.Fatalf("bearer token refused by blob: %v\n%s", err, az.Log())
	}
	tables, err := aztables.NewServiceClient(az.TableURL+"/", good, &aztables.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tables.CreateTable(ctx, "tlsbearer", nil); err != nil {
		t.Fatalf("bearer token refused by table: %v\n%s", err, az.Log())
	}

	// An expired one is refused.
	expired := staticToken(identitytest.Token(identitytest.Storage, -time.Hour))
	stale, err := azblob.NewClient(az.BlobURL+"/", expired, &azblob.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stale.ServiceClient().NewContainerClient("tlskey").GetProperties(ctx, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden && re.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired token: err = %v, want 401 or 403", err)
	}

	// Without the certificate, TLS verification fails.
	untrusted, err := azblob.NewClientFromConnectionString(az.ConnectionString, &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = untrusted.ServiceClient().NewContainerClient("tlskey").GetProperties(ctx, nil)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("a client without the certificate: err = %v, want x509.UnknownAuthorityError", err)
	}

	if err := az.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(az.CertFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("certificate %s left after Stop: %v", az.CertFile, err)
	}
}
