package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
)

func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }

func testTables(t *testing.T) *Tables {
	t.Helper()
	az := azuritetest.Require(t)
	svc, err := aztables.NewServiceClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	tables := NewTables(svc, fmt.Sprintf("w%x", b))
	if err := tables.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tables
}

func entity(t *testing.T, pk, rk, value string) Entity {
	t.Helper()
	body, err := json.Marshal(map[string]string{"PartitionKey": pk, "RowKey": rk, "V": value})
	if err != nil {
		t.Fatal(err)
	}
	return Entity{Table: TableEvents, PK: pk, RK: rk, Body: body}
}

func countRows(t *testing.T, tables *Tables) int {
	t.Helper()
	n := 0
	pager := tables.Client(TableEvents).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Entities)
	}
	return n
}

// A row the service refuses as invalid is never skipped: Flush fails with
// ErrRowRefused naming its keys and the error code, and the log says the
// same, so that no checkpoint moves past it (HAZARDS 12).
func TestWriterFailsOnARefusedRow(t *testing.T) {
	tables := testTables(t)
	var logs bytes.Buffer
	w := tables.NewWriter(slog.New(slog.NewJSONHandler(&logs, nil)), 2, 0)
	ctx := context.Background()
	for i := range 10 {
		v := "ok"
		if i == 4 {
			v = strings.Repeat("x", 70000) // over the 64 KiB property limit
		}
		if err := w.Add(ctx, entity(t, "p", fmt.Sprintf("r%02d", i), v)); err != nil {
			t.Fatal(err)
		}
	}
	err := w.Flush(ctx)
	if !errors.Is(err, ErrRowRefused) || !strings.Contains(err.Error(), `"r04"`) || !strings.Contains(err.Error(), "PropertyValueTooLarge") {
		t.Fatalf("Flush: %v, want ErrRowRefused naming row r04 and the code", err)
	}
	if st := w.Stats(); st.Rejected != 1 {
		t.Errorf("stats %+v, want 1 refused", st)
	}
	var rec struct{ Level, Partition, Row, Code string }
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &rec); err != nil {
		t.Fatalf("want one log line for the refused row: %v\n%s", err, logs.String())
	}
	if rec.Level != "ERROR" || rec.Partition != "p" || rec.Row != "r04" || rec.Code != "PropertyValueTooLarge" {
		t.Errorf("refused row logged as %+v", rec)
	}
}

// A table dropped under a Writer is created again and the rows written;
// nothing is refused, and Recreated says it happened.
func TestWriterRecreatesDroppedTable(t *testing.T) {
	tables := testTables(t)
	ctx := context.Background()
	if _, err := tables.Client(TableEvents).Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	w := tables.NewWriter(slog.New(slog.DiscardHandler), 2, 0)
	for i := range 250 {
		if err := w.Add(ctx, entity(t, fmt.Sprintf("p%d", i%3), fmt.Sprintf("r%03d", i), "ok")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Entities != 250 || st.Rejected != 0 {
		t.Errorf("stats %+v, want 250 written, none refused", st)
	}
	if n := countRows(t, tables); n != 250 {
		t.Errorf("%d rows, want 250", n)
	}
	if tables.Recreated() != 1 {
		t.Errorf("Recreated %d, want 1", tables.Recreated())
	}
}

// countRequests is a pipeline policy counting requests.
type countRequests struct{ n atomic.Int32 }

func (c *countRequests) Do(req *policy.Request) (*http.Response, error) {
	c.n.Add(1)
	return req.Next()
}

// Verify costs one listing when every table is there, and re-creates one
// that is not.
func TestVerifyListsOnceAndRecreatesMissing(t *testing.T) {
	tables := testTables(t)
	az := azuritetest.Require(t)
	counter := &countRequests{}
	cred, err := aztables.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := aztables.NewServiceClientWithSharedKey(az.TableURL+"/", cred,
		&aztables.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{counter}}})
	if err != nil {
		t.Fatal(err)
	}
	counted := NewTables(svc, tables.Name(""))
	ctx := context.Background()
	if err := counted.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if counter.n.Load() != 1 || counted.Recreated() != 0 {
		t.Errorf("Verify of intact tables: %d requests, %d re-created; want 1, 0", counter.n.Load(), counted.Recreated())
	}
	if _, err := tables.Client(TablePostings).Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := counted.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if counted.Recreated() != 1 {
		t.Errorf("Verify after a table was dropped: %d re-created, want 1", counted.Recreated())
	}
	if _, err := tables.Client(TablePostings).GetEntity(ctx, "x", "y", nil); !strings.Contains(fmt.Sprint(err), "ResourceNotFound") {
		t.Errorf("Postings after Verify: %v, want the table back (ResourceNotFound)", err)
	}
}
