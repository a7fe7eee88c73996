package ingest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// dropAfterBatch is a pipeline policy that deletes a table once, right
// after the after-th entity-group transaction into that table (0: the
// first) succeeded: the table vanishes in the middle of an ingest, with
// rows of it already written and more to come.
type dropAfterBatch struct {
	table   string // full table name
	after   int32
	drop    func() error
	batches atomic.Int32
	once    sync.Once
	dropped atomic.Bool
	err     error
}

func (p *dropAfterBatch) Do(req *policy.Request) (*http.Response, error) {
	target := false
	if strings.HasSuffix(req.Raw().URL.Path, "/$batch") && req.Body() != nil {
		b, err := io.ReadAll(req.Body())
		if err != nil {
			return nil, err
		}
		if err := req.RewindBody(); err != nil {
			return nil, err
		}
		target = bytes.Contains(b, []byte("/"+p.table+"("))
	}
	resp, err := req.Next()
	if target && err == nil && resp.StatusCode == http.StatusAccepted && p.batches.Add(1) > p.after {
		p.once.Do(func() { p.err = p.drop(); p.dropped.Store(true) })
	}
	return resp, err
}

// tableClient is a table service client of the shared Azurite with extra
// per-call policies.
func tableClient(t *testing.T, policies ...policy.Policy) *aztables.ServiceClient {
	t.Helper()
	az := azuritetest.Require(t)
	cred, err := aztables.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := aztables.NewServiceClientWithSharedKey(az.TableURL+"/", cred,
		&aztables.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: policies}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// The Postings table deleted while an ingest writes into it is created again
// and every row of it written, those of the chunks committed before it
// was dropped included: none is "refused", and the checkpoint does not
// stay past rows the table lost.
func TestLookupTableDroppedMidIngestLosesNoRow(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	const n = 400 // about 8 chunks of 50 records; every record has its own IP
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, n))

	prefix := e.Tables.Name("")
	drop := &dropAfterBatch{table: e.Tables.Name(index.TablePostings), after: 6} // in the third chunk (three partitions a chunk)
	drop.drop = func() error {
		_, err := e.Tables.Client(index.TablePostings).Delete(context.Background(), nil)
		return err
	}
	tables := index.NewTables(tableClient(t, drop), prefix)
	in := &ingest.Ingester{Container: e.Container, Tables: tables, Log: e.Log, Concurrency: 4, ChunkBytes: 32 << 10}

	res, err := in.IngestBlob(context.Background(), name)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	if !drop.dropped.Load() || drop.err != nil {
		t.Fatalf("the table was not dropped mid-ingest (err %v)", drop.err)
	}
	if res.Commits < 3 {
		t.Fatalf("%d commits: the table was not dropped after a commit", res.Commits)
	}
	t.Logf("result %+v, tables re-created %d", res, tables.Recreated())
	if res.Rejected != 0 {
		t.Errorf("%d rows refused; a missing table is not a reason to refuse a row", res.Rejected)
	}
	if res.Records != n || res.To != e.BlobLength(name) {
		t.Errorf("result %+v, want %d records to the end", res, n)
	}
	if got := len(e.Postings(index.KindIP)); got != n {
		t.Errorf("%d events in IP postings, want %d", got, n)
	}
	if got := len(e.Rows(index.TableEvents)); got != n {
		t.Errorf("%d event rows, want %d", got, n)
	}
	cp := checkpoint(e, name)
	if cp.Records != n || total(cp.Counts) != n || cp.Rejected != 0 || cp.Offset != e.BlobLength(name) {
		t.Errorf("checkpoint records=%d counts=%d rejected=%d offset=%d", cp.Records, total(cp.Counts), cp.Rejected, cp.Offset)
	}
}

// Storage that loses every index table between two invocations (an
// emulator killed before it saved them, tables deleted by hand) costs no
// restart: the next invocation creates them again and indexes the blob
// from 0, exactly once.
func TestAllTablesLostBetweenInvocations(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 200))
	e.Ingest(name)

	for _, short := range index.AllTables {
		if _, err := e.Tables.Client(short).Delete(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.Append(name, false, ingesttest.Records("vault1", hour, 200, 100))

	res := e.Ingest(name) // the same Ingester and Tables: nothing restarted
	if res.From != 0 || res.Records != 300 || res.To != e.BlobLength(name) {
		t.Fatalf("after the tables were lost: %+v, want 300 records from 0", res)
	}
	for id, c := range e.CountEvents() {
		if c != 1 {
			t.Errorf("record %s indexed %d times", id, c)
		}
	}
	if got := len(e.Rows(index.TableEvents)); got != 300 {
		t.Errorf("%d event rows, want 300", got)
	}
	if got := len(e.Postings(index.KindIP)); got != 300 {
		t.Errorf("%d events in IP postings, want 300", got)
	}
	cp := checkpoint(e, name)
	if cp.Records != 300 || total(cp.Counts) != 300 {
		t.Errorf("checkpoint records=%d counts=%d, want 300", cp.Records, total(cp.Counts))
	}
	prefixes, err := ingest.KnownVaultPrefixes(context.Background(), e.Tables)
	if err != nil || len(prefixes) != 1 {
		t.Errorf("vault registry after the loss: %v, %v", prefixes, err)
	}
}

// A table dropped after the last write of a chunk into it, before the
// checkpoint, is found before the checkpoint moves: the chunk is written
// again instead of being committed over rows that are gone.
func TestTableDroppedAfterItsLastWriteBeforeCommit(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	const n = 60 // one chunk: three Postings transactions (callers, IPs, objects), the chunk's last writes
	oneIP := regexp.MustCompile(`"callerIpAddress":"[0-9.]+"`).ReplaceAll(
		ingesttest.Records("vault1", hour, 0, n), []byte(`"callerIpAddress":"10.9.9.9"`))
	e.Append(name, true, oneIP)

	drop := &dropAfterBatch{table: e.Tables.Name(index.TablePostings), after: 2}
	drop.drop = func() error {
		_, err := e.Tables.Client(index.TablePostings).Delete(context.Background(), nil)
		return err
	}
	tables := index.NewTables(tableClient(t, drop), e.Tables.Name(""))
	in := &ingest.Ingester{Container: e.Container, Tables: tables, Log: e.Log, Concurrency: 4}
	res, err := in.IngestBlob(context.Background(), name)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	if !drop.dropped.Load() || drop.err != nil {
		t.Fatalf("the table was not dropped (err %v)", drop.err)
	}
	if res.Records != n || res.To != e.BlobLength(name) {
		t.Errorf("result %+v, want %d records to the end", res, n)
	}
	if got := len(e.Postings(index.KindIP)); got != n {
		t.Errorf("%d events in IP postings after the checkpoint moved, want %d", got, n)
	}
}

// The Postings table lost between two invocations of a blob: the next one,
// finding it missing, reads the blob again from 0, so the blob's rows
// come back and its counts stay exact.
func TestLookupTableLostBetweenInvocations(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 300))
	e.Ingest(name)
	if _, err := e.Tables.Client(index.TablePostings).Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	e.Append(name, false, ingesttest.Records("vault1", hour, 300, 20))

	res := e.Ingest(name)
	if res.From != 0 || res.Records != 320 || res.To != e.BlobLength(name) || res.Rejected != 0 {
		t.Fatalf("after Postings was lost: %+v, want 320 records read again from 0", res)
	}
	if got := len(e.Postings(index.KindIP)); got != 320 {
		t.Errorf("%d events in IP postings, want 320", got)
	}
	for id, c := range e.CountEvents() {
		if c != 1 {
			t.Errorf("record %s indexed %d times", id, c)
		}
	}
	cp := checkpoint(e, name)
	if cp.Records != 320 || total(cp.Counts) != 320 {
		t.Errorf("checkpoint records=%d counts=%d, want 320", cp.Records, total(cp.Counts))
	}
}
