package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

// env is one test's private container and tables in the shared Azurite.
type env struct {
	t      testing.TB
	cc     *container.Client
	tables *index.Tables
	in     *Ingester
}

func newEnv(t testing.TB) *env {
	t.Helper()
	az := azuritetest.Require(t)
	acct, err := config.ParseConnectionString(az.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := azstore.NewBlobClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := azstore.NewTableClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	id := randomID()
	cc := bc.ServiceClient().NewContainerClient("logs-" + id)
	if _, err := cc.Create(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	tables := index.NewTables(tc, "t"+id)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return &env{t: t, cc: cc, tables: tables, in: &Ingester{Container: cc, Tables: tables, Log: log, Concurrency: 4}}
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// blobName is an Azure Monitor path for vault at hour.
func blobName(vault string, hour time.Time) string {
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(vault), hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}

// appendBlob creates name as an empty append blob when create is set, then
// appends each chunk as one Append Block, as Azure Monitor does.
func (e *env) appendBlob(name string, create bool, chunks ...[]byte) {
	e.t.Helper()
	ab := e.cc.NewAppendBlobClient(name)
	ctx := context.Background()
	if create {
		if _, err := ab.Create(ctx, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, c := range chunks {
		for len(c) > 0 {
			n := min(len(c), 4<<20) // Append Block takes at most 4 MiB
			if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(c[:n])), nil); err != nil {
				e.t.Fatal(err)
			}
			c = c[n:]
		}
	}
}

func (e *env) ingest(name string) Result {
	e.t.Helper()
	res, err := e.in.IngestBlob(context.Background(), name)
	if err != nil {
		e.t.Fatalf("IngestBlob: %v", err)
	}
	return res
}

// rows lists every row of a table, keyed "PK/RK".
func (e *env) rows(short string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	pager := e.tables.Client(short).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			e.t.Fatalf("list %s: %v", short, err)
		}
		for _, raw := range page.Entities {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				e.t.Fatal(err)
			}
			out[m["PartitionKey"].(string)+"/"+m["RowKey"].(string)] = m
		}
	}
	return out
}

func (e *env) checkpoint(name string) *Checkpoint {
	e.t.Helper()
	cp, err := loadCheckpoint(context.Background(), e.tables, name)
	if err != nil {
		e.t.Fatal(err)
	}
	if !cp.exists {
		e.t.Fatalf("no checkpoint for %s", name)
	}
	return cp
}

func (e *env) blobLength(name string) int64 {
	e.t.Helper()
	p, err := e.cc.NewBlobClient(name).GetProperties(context.Background(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return *p.ContentLength
}

// total is the sum of every hour's Total in c.
func total(c *index.Counts) int64 {
	var n int64
	for _, h := range c.Hours {
		n += h.Total
	}
	return n
}

// record builds one JSON Lines record at t with a distinct correlation id.
func record(vault string, t time.Time, i int, extra string) []byte {
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"%d","callerIpAddress":"10.0.%d.%d","correlationId":"c-%06d","identity":{"claim":{"oid":"oid-%d","upn":"user%d@example.com","appid":"app-1"}},"properties":{"id":"https://%s.vault.azure.net/secrets/s%d/v1","clientInfo":"go-test","httpStatusCode":200,"requestUri":"https://%s.vault.azure.net/secrets/s%d?api-version=7.4","tlsVersion":"TLS1_2"%s}}`+"\n",
		t.UTC().Format("2006-01-02T15:04:05.0000000Z"), strings.ToUpper(vault), i%900, i%7, i%250, i, i%5, i%5, vault, i%11, vault, i%11, extra)
}

func records(vault string, start time.Time, n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, record(vault, start.Add(time.Duration(i)*time.Second), i, "")...)
	}
	return b
}
