package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// growWhileRead is a pipeline policy playing Azure Monitor during a long
// read: before each of the first GETs of the blob after the first it
// appends records, and the first GET's body breaks off (as a try timeout
// or a dropped connection does) right after an append.
type growWhileRead struct {
	appendMore func()
	gets       atomic.Int32
}

func (p *growWhileRead) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/PT1H.json") {
		return req.Next()
	}
	i := p.gets.Add(1)
	if i >= 2 && i <= 4 {
		p.appendMore()
	}
	resp, err := req.Next()
	if err == nil && i == 1 && resp.StatusCode == http.StatusPartialContent {
		resp.Body = &breakingBody{ReadCloser: resp.Body, left: 5000, onBreak: p.appendMore}
	}
	return resp, err
}

// breakingBody yields left bytes, then calls onBreak and fails.
type breakingBody struct {
	io.ReadCloser
	left    int
	onBreak func()
	once    sync.Once
}

func (b *breakingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.once.Do(b.onBreak)
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

// A long read of a blob that grows meanwhile completes, with every record
// indexed exactly once: the ranges carry no If-Match, so an append between
// them (or before a broken-off body is asked for again) is no 412; the
// bytes appended after the length seen wait for the next invocation.
func TestBlobGrowingDuringRangedReadCompletes(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	const n = 400
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, n))
	length := e.BlobLength(name)

	var mu sync.Mutex
	next := n
	grow := &growWhileRead{appendMore: func() {
		mu.Lock()
		defer mu.Unlock()
		e.Append(name, false, ingesttest.Records("vault1", hour, next, 10))
		next += 10
	}}
	cred, err := container.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(e.Container.URL(), cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{grow}}})
	if err != nil {
		t.Fatal(err)
	}
	in := &ingest.Ingester{Container: cc, Tables: e.Tables, Log: e.Log, Concurrency: 4, RangeBytes: 64 << 10}

	res, err := in.IngestBlob(context.Background(), name)
	if err != nil {
		t.Fatalf("ingest of a blob growing while read: %v", err)
	}
	t.Logf("first: %+v, %d GETs, %d records appended meanwhile", res, grow.gets.Load(), next-n)
	if res.Records != n || res.To != length || res.Length != length || res.Skipped != "" {
		t.Fatalf("first ingest %+v, want %d records to the length seen, %d", res, n, length)
	}
	if grow.gets.Load() < 5 || next-n != 40 {
		t.Fatalf("%d GETs and %d records appended: the read was not ranged, or the blob did not grow", grow.gets.Load(), next-n)
	}

	res = e.Ingest(name)
	if res.From != length || res.Records != int64(next-n) || res.To != e.BlobLength(name) {
		t.Fatalf("second ingest %+v, want the %d appended records", res, next-n)
	}
	got := e.CountEvents()
	if len(got) != next {
		t.Errorf("%d records indexed, want %d", len(got), next)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("record %s indexed %d times", id, c)
		}
	}
	cp := checkpoint(e, name)
	if cp.Records != int64(next) || total(cp.Counts) != int64(next) {
		t.Errorf("checkpoint records=%d counts=%d, want %d", cp.Records, total(cp.Counts), next)
	}
}

// recreateBeforeGet is a pipeline policy that runs recreate once, before
// the second GET of the blob.
type recreateBeforeGet struct {
	recreate func()
	gets     atomic.Int32
}

func (p *recreateBeforeGet) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/PT1H.json") && p.gets.Add(1) == 2 {
		p.recreate()
	}
	return req.Next()
}

// A blob deleted and created again between two ranges is a new lineage:
// the read stops before using a byte of it, and the next invocation reads
// the new blob from 0 under its own keys. No record of one lineage is
// indexed under the other's.
func TestBlobRecreatedBetweenRangesNotMixed(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 300))
	bc := e.Container.NewBlobClient(name)
	props, err := bc.GetProperties(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const fresh = 1000 // the new blob's first record id
	recreate := &recreateBeforeGet{recreate: func() {
		// Creation times have whole seconds: re-create until it differs
		// (bounded), as a blob re-created by Azure Monitor does.
		for i := 0; ; i++ {
			if _, err := bc.Delete(context.Background(), nil); err != nil {
				t.Error(err)
				return
			}
			e.Append(name, true)
			p, err := bc.GetProperties(context.Background(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			if !p.CreationTime.Equal(*props.CreationTime) {
				break
			}
			if i == 40 {
				t.Error("creation time never changed")
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.Append(name, false, ingesttest.Records("vault1", hour, fresh, 300))
	}}
	cred, err := container.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(e.Container.URL(), cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{recreate}}})
	if err != nil {
		t.Fatal(err)
	}
	in := &ingest.Ingester{Container: cc, Tables: e.Tables, Log: e.Log, Concurrency: 4, RangeBytes: 64 << 10}
	res, err := in.IngestBlob(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != "blob changed while reading" || res.Commits != 0 {
		t.Fatalf("read across a re-creation: %+v", res)
	}

	res = e.Ingest(name)
	if res.From != 0 || res.Records != 300 || res.To != e.BlobLength(name) {
		t.Fatalf("new blob: %+v, want its 300 records from 0", res)
	}
	// Rows of the old blob's first range may stay (written before the
	// read stopped: events that happened); every row is under the lineage
	// of the blob its record came from, and the new blob's records are
	// each indexed once.
	cp := checkpoint(e, name)
	newRecords := 0
	for _, row := range e.Rows(index.TableEvents) {
		var i int
		if _, err := fmt.Sscanf(row[index.PropCorrelationID].(string), "c-%d", &i); err != nil {
			t.Fatal(err)
		}
		lineage := strings.Split(row["RowKey"].(string), "_")[1]
		if (i >= fresh) != (lineage == cp.SourceID()) {
			t.Errorf("record c-%d (new blob: %v) under lineage %s; the new blob's is %s", i, i >= fresh, lineage, cp.SourceID())
		}
		if i >= fresh {
			newRecords++
		}
	}
	if newRecords != 300 {
		t.Errorf("%d rows of the new blob, want 300", newRecords)
	}
	if cp.Records != 300 || total(cp.Counts) != 300 {
		t.Errorf("checkpoint records=%d counts=%d, want 300", cp.Records, total(cp.Counts))
	}
}
