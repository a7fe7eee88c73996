package ingest_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
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

// slowTableWrites is a pipeline policy playing a busy or throttled table
// endpoint: every request that writes (a transaction, an upsert, a table
// created) waits d before it is sent.
type slowTableWrites struct {
	d      time.Duration
	writes atomic.Int64
}

func (p *slowTableWrites) Do(req *policy.Request) (*http.Response, error) {
	if m := req.Raw().Method; m != http.MethodGet && m != http.MethodHead {
		p.writes.Add(1)
		select {
		case <-time.After(p.d):
		case <-req.Raw().Context().Done():
			return nil, req.Raw().Context().Err()
		}
	}
	return req.Next()
}

// blobGets is a pipeline policy counting the GETs of the blob's content.
type blobGets struct{ n atomic.Int64 }

func (p *blobGets) Do(req *policy.Request) (*http.Response, error) {
	if r := req.Raw(); r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/PT1H.json") {
		p.n.Add(1)
	}
	return req.Next()
}

// A blob read must not wait on the table writes its rows cause (issue 15,
// item 8). The blob client's try timeout is lowered to 200 ms (azstore's
// is 60 s) and every table write is delayed by 100 ms, so that committing
// one 512 KiB chunk (its transactions and checkpoint, one at a time) takes
// about 0.5 s. A 1 MiB range whose body stayed open while its chunks were
// committed was cut by the try timeout at the first read after each
// commit, before its end, and the ingest failed as storage unavailable
// after 3 re-asks; a range read whole before its rows are written takes one
// short try. The ingest must complete, every record indexed once.
func TestRangeReadNotHeldByTableWrites(t *testing.T) {
	e := ingesttest.New(t)
	az := azuritetest.Require(t)
	name := ingesttest.BlobName("vault1", hour)
	// About 2.6 MiB in records of 6 KiB (few rows per byte): three ranges.
	const n = 400
	desc := `,"note":"` + strings.Repeat("d", 6<<10) + `"`
	var data []byte
	for i := range n {
		data = append(data, ingesttest.RecordWith("vault1", hour.Add(time.Duration(i)*time.Second), i, desc)...)
	}
	e.Append(name, true, data)
	length := e.BlobLength(name)

	slow := &slowTableWrites{d: 100 * time.Millisecond}
	tcred, err := aztables.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := aztables.NewServiceClientWithSharedKey(az.TableURL+"/", tcred,
		&aztables.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{slow}}})
	if err != nil {
		t.Fatal(err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	e.Tables = index.NewTables(tc, fmt.Sprintf("s%x", id))

	gets := &blobGets{}
	cred, err := container.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(e.Container.URL(), cred, &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry:           policy.RetryOptions{TryTimeout: 200 * time.Millisecond, RetryDelay: 10 * time.Millisecond},
		PerCallPolicies: []policy.Policy{gets},
	}})
	if err != nil {
		t.Fatal(err)
	}
	in := &ingest.Ingester{Container: cc, Tables: e.Tables, Log: e.Log, Concurrency: 1, RangeBytes: 1 << 20, ChunkBytes: 512 << 10}

	start := time.Now()
	res, err := in.IngestBlob(context.Background(), name)
	t.Logf("%+v; %d blob GETs, %d table writes delayed, %v", res, gets.n.Load(), slow.writes.Load(), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("ingest with slow table writes failed: %v", err)
	}
	if res.Records != n || res.To != length || res.Skipped != "" {
		t.Fatalf("result %+v, want %d records to %d", res, n, length)
	}
	if res.Commits < 5 || gets.n.Load() < 3 {
		t.Fatalf("%d commits, %d GETs: the case needs several ranges of several chunks", res.Commits, gets.n.Load())
	}
	got := e.CountEvents()
	if len(got) != n {
		t.Errorf("%d records indexed, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("record %s indexed %d times", id, c)
		}
	}
	if cp := checkpoint(e, name); cp.Records != n || total(cp.Counts) != n {
		t.Errorf("checkpoint records=%d counts=%d, want %d", cp.Records, total(cp.Counts), n)
	}
}

// bodyFault is a pipeline policy that changes what the blob's GETs answer,
// from the first GET on: fault gets the GET's number (from 1).
type bodyFault struct {
	gets  atomic.Int32
	fault func(i int32, resp *http.Response)
}

func (p *bodyFault) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/PT1H.json") {
		return req.Next()
	}
	i := p.gets.Add(1)
	resp, err := req.Next()
	if err == nil && resp.StatusCode == http.StatusPartialContent {
		p.fault(i, resp)
	}
	return resp, err
}

// What the range reader promises when a response is not what it asked
// for: a body that breaks off is asked for again from where it stopped, at
// most 3 times per range, then the read fails as storage unavailable (the
// host retries; the checkpoint stays); a Content-Length other than the
// range asked for is a claim not trusted: the blob is taken as changed
// before a byte of that response is read, whatever size it claims.
func TestRangeResponseFaults(t *testing.T) {
	const n = 150 // about 105 KiB: two ranges of 64 KiB
	breakAfter := func(left int) func(int32, *http.Response) {
		return func(_ int32, resp *http.Response) {
			resp.Body = &breakingBody{ReadCloser: resp.Body, left: left, onBreak: func() {}}
		}
	}
	claim := func(delta int64) func(int32, *http.Response) {
		return func(i int32, resp *http.Response) {
			if i == 2 {
				got, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
				resp.Header.Set("Content-Length", strconv.FormatInt(got+delta, 10))
			}
		}
	}
	cases := []struct {
		name     string
		fault    func(int32, *http.Response)
		wantGets int32 // GETs of the blob, 0: not checked
		wantErr  error // from IngestBlob
		skipped  string
		records  int64
	}{
		{name: "every body breaks", fault: breakAfter(1000), wantGets: 4, wantErr: azstore.ErrTransient},
		{name: "three bodies break", fault: func(i int32, resp *http.Response) {
			if i <= 3 {
				breakAfter(10000)(i, resp)
			}
		}, wantGets: 5, records: n},
		{name: "claims 1 GiB more", fault: claim(1 << 30), wantGets: 2, skipped: "blob changed while reading"},
		{name: "claims a byte less", fault: claim(-1), wantGets: 2, skipped: "blob changed while reading"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ingesttest.New(t)
			name := ingesttest.BlobName("vault1", hour)
			e.Append(name, true, ingesttest.Records("vault1", hour, 0, n))
			f := &bodyFault{fault: c.fault}
			cred, err := container.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := container.NewClientWithSharedKeyCredential(e.Container.URL(), cred,
				&container.ClientOptions{ClientOptions: azcore.ClientOptions{PerCallPolicies: []policy.Policy{f}}})
			if err != nil {
				t.Fatal(err)
			}
			in := &ingest.Ingester{Container: cc, Tables: e.Tables, Log: e.Log, Concurrency: 4, RangeBytes: 64 << 10}
			res, err := in.IngestBlob(context.Background(), name)
			t.Logf("%+v, %d GETs: %v", res, f.gets.Load(), err)
			switch {
			case c.wantErr == nil && err != nil:
				t.Fatalf("ingest failed: %v", err)
			case c.wantErr != nil && !errors.Is(err, c.wantErr):
				t.Fatalf("ingest error %v, want %v", err, c.wantErr)
			}
			if c.wantGets != 0 && f.gets.Load() != c.wantGets {
				t.Errorf("%d GETs of the blob, want %d", f.gets.Load(), c.wantGets)
			}
			if res.Skipped != c.skipped || res.Records != c.records {
				t.Errorf("result %+v, want skipped %q and %d records", res, c.skipped, c.records)
			}
			if c.records == 0 {
				if res.Commits != 0 {
					t.Errorf("%d commits: the checkpoint moved", res.Commits)
				}
				return
			}
			got := e.CountEvents()
			if len(got) != n {
				t.Errorf("%d records indexed, want %d", len(got), n)
			}
			for id, k := range got {
				if k != 1 {
					t.Errorf("record %s indexed %d times", id, k)
				}
			}
		})
	}
}
