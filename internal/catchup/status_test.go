package catchup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// ShortError keeps kvaudit's own words of a recorded error and drops the
// SDK's: request URLs (a SAS signature in their query), the service's
// response, network addresses. The errors are real: the SDK's answers of
// Azurite and net/http's of a closed port.
func TestShortError(t *testing.T) {
	e := ingesttest.New(t)
	ctx := context.Background()
	name := ingesttest.BlobName("vault1", now)
	_, blobErr := e.Container.NewBlobClient(name).DownloadStream(ctx, nil)
	_, tableErr := e.Tables.Client("Nosuchtable").GetEntity(ctx, "p", "r", nil)
	resp, netErr := http.Get("http://127.0.0.1:1/logs/b?sv=2024-08-04&sig=S3cr3tSignature%3D")
	if blobErr == nil || tableErr == nil || netErr == nil {
		t.Fatalf("want three failures: %v, %v, %v", blobErr, tableErr, netErr)
	}
	if resp != nil {
		resp.Body.Close()
	}
	long := strings.Repeat("é", 400)
	for _, tt := range []struct {
		name, text, want string
	}{
		{"blob not found", fmt.Sprintf("ingest: read blob %q: %v", "b1", azstore.Classify(blobErr)),
			`ingest: read blob "b1": not found (storage answered 404 BlobNotFound)`},
		{"table not found", fmt.Errorf("index: write 3 rows to kvauditEvents partition %q: %w", "kv1|20261121", azstore.Classify(tableErr)).Error(),
			`index: write 3 rows to kvauditEvents partition "kv1|20261121": table not found: not found (storage answered 404 TableNotFound)`},
		{"transport error, unredacted", "ingest: read blob \"b1\": " + netErr.Error(), `ingest: read blob "b1"`},
		{"transport error, redacted", "ingest: read blob \"b1\": " + azstore.Classify(netErr).Error(), `ingest: read blob "b1": storage unavailable`},
		{"bare transport error", netErr.Error(), "failed; handler status and the handler's log show the error"},
		{"access refused", (&azstore.AuthError{Setting: "AuditLogsStorage", Check: "the storage account refused the identity: check that it holds Storage Blob Data Owner", Err: blobErr}).Error(),
			"AuditLogsStorage: the storage account refused the identity: check that it holds Storage Blob Data Owner (storage answered 404 BlobNotFound)"},
		{"kvaudit's own", `ingest: blob "b1": lost the checkpoint race 5 times`, `ingest: blob "b1": lost the checkpoint race 5 times`},
		{"a connection string", "azstore: bad setting DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;", "azstore: bad setting DefaultEndpointsProtocol=https;AccountName=a;"},
		{"long", long, strings.Repeat("é", 150) + "…"},
		{"none", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ShortError(tt.text)
			if got != tt.want {
				t.Errorf("ShortError(%q)\n = %q\nwant %q", tt.text, got, tt.want)
			}
			for _, leak := range []string{"\n", "://", "sig=", "S3cr3t", "c2VjcmV0", "127.0.0.1", "RESPONSE", "dial", "{", "RequestId"} {
				if strings.Contains(got, leak) {
					t.Errorf("ShortError keeps %q: %q", leak, got)
				}
			}
		})
	}
	if !errors.Is(azstore.Classify(blobErr), azstore.ErrNotFound) {
		t.Fatal("the blob error is not the SDK's 404")
	}
}
