package azstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
	for _, tt := range []struct {
		err  error
		want error
	}{
		{context.Canceled, context.Canceled},
		{fmt.Errorf("plain"), nil},
	} {
		got := Classify(tt.err)
		if tt.want != nil && !errors.Is(got, tt.want) {
			t.Errorf("Classify(%v) = %v", tt.err, got)
		}
		if tt.want == nil && (errors.Is(got, ErrTransient) || errors.Is(got, ErrNotFound)) {
			t.Errorf("Classify(%v) = %v, want unclassified", tt.err, got)
		}
	}
}
