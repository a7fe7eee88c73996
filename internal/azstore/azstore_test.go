package azstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/kvaudit/kvaudit/internal/config"
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
		{respErr(403, "AuthorizationFailure"), nil},
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
