package query

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// appendBlob writes data as one append blob of name.
func (e *env) appendBlob(name string, data []byte) {
	e.t.Helper()
	ab := e.cc.NewAppendBlobClient(name)
	ctx := context.Background()
	if _, err := ab.Create(ctx, nil); err != nil {
		e.t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(len(data), 4<<20)
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data[:n])), nil); err != nil {
			e.t.Fatal(err)
		}
		data = data[n:]
	}
}

// generated is n records made from the samples: sample i%32 with its time
// moved to start + i×7 s and its correlation id made unique, every other
// byte as logged.
func generated(t *testing.T, samples [][]byte, start time.Time, n int) []byte {
	t.Helper()
	var out []byte
	for i := range n {
		line := samples[i%len(samples)]
		var rec parse.Record
		p := parse.NewReader(bytes.NewReader(line), parse.Options{Complete: true})
		if err := p.Next(&rec); err != nil {
			t.Fatal(err)
		}
		s := string(line)
		if j := strings.Index(s, `"time"`); j >= 0 {
			if k := strings.Index(s[j:], `"`+rec.Time.Format("2006-01-02T")); k >= 0 {
				end := strings.IndexByte(s[j+k+1:], '"')
				s = s[:j+k] + `"` + parse.FormatTime(start.Add(time.Duration(i)*7*time.Second)) + `"` + s[j+k+1+end+1:]
			}
		}
		if rec.CorrelationID != "" {
			s = strings.Replace(s, rec.CorrelationID, fmt.Sprintf("%s-g%05d", rec.CorrelationID, i), 1)
		}
		out = append(out, s...)
		out = append(out, '\n')
	}
	return out
}

// Fidelity: every record of the 32 samples and of data generated from
// them, read back through the query API's events (by vault, and by each
// caller id, IP and object, which go through the postings), is exactly
// what `handler parse` prints for it.
func TestQueryGivesWhatParsePrints(t *testing.T) {
	e := newEnv(t)
	raw, err := os.ReadFile("../parse/testdata/sekoia-intake-formats-keyvault.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	samples := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
	if len(samples) != 32 {
		t.Fatalf("%d samples, want 32", len(samples))
	}
	blobs := map[string][]byte{
		blobName("testpermissionvault", at("2024-04-03T14:00:00Z")): raw,
		blobName("kv-generated", at("2026-11-20T10:00:00Z")):        generated(t, samples, at("2026-11-20T10:00:00Z"), 400),
	}
	want := map[string]string{} // blob|offset → parse's line
	type key struct{ sel, val, day string }
	queries := map[key]bool{}
	for name, data := range blobs {
		e.appendBlob(name, data)
		if res := e.ingest(name); res.BadRecords != 0 {
			t.Fatalf("%s: %+v", name, res)
		}
		p := parse.NewReader(bytes.NewReader(data), parse.Options{Blob: name, Complete: true})
		for {
			var rec parse.Record
			if err := p.Next(&rec); err != nil {
				break
			}
			want[fmt.Sprintf("%s|%d", name, rec.Offset)] = string(parse.AppendJSON(nil, &rec))
			day := rec.Time.UTC().Format(time.DateOnly)
			queries[key{"vault", rec.Vault, day}] = true
			for _, id := range []string{rec.Identity.ObjectID, rec.Identity.UPN, rec.Identity.AppID} {
				if id != "" {
					queries[key{"caller", id, day}] = true
				}
			}
			if rec.CallerIPAddress != "" {
				queries[key{"ip", rec.CallerIPAddress, day}] = true
			}
			if rec.ObjectName != "" {
				queries[key{"object", rec.ObjectName, day}] = true
			}
		}
	}
	if len(want) != 432 {
		t.Fatalf("%d records parsed, want 432", len(want))
	}
	seen := map[string]bool{}
	ctx := context.Background()
	for k := range queries {
		from, _ := time.Parse(time.DateOnly, k.day)
		v := mustValues(t, "limit=1000")
		v.Set(k.sel, k.val)
		v.Set("from", from.Format(time.RFC3339))
		v.Set("to", from.AddDate(0, 0, 1).Format(time.RFC3339))
		for {
			eq, err := ParseEvents(v, time.Now(), Limits{})
			if err != nil {
				if _, ok := err.(*ParamError); ok && k.sel == "ip" {
					break // a sample IP the API does not accept as a parameter
				}
				t.Fatalf("%v: %v", k, err)
			}
			next, err := e.q.Events(ctx, eq, func(rec *parse.Record) error {
				id := fmt.Sprintf("%s|%d", rec.Blob, rec.Offset)
				w, ok := want[id]
				if !ok {
					return fmt.Errorf("%v: event %s was not parsed", k, id)
				}
				if got := string(parse.AppendJSON(nil, rec)); got != w {
					return fmt.Errorf("%v: event %s\n got %s\nwant %s", k, id, got, w)
				}
				seen[id] = true
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next == "" {
				break
			}
			v.Set(ParamContinuation, next)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d records found by the queries", len(seen), len(want))
	}
}

// Postings written twice over the same records with other chunk
// boundaries — a re-read with another chunk size, two writers racing —
// overlap; each event is still answered once, and stats by caller agree.
func TestPostingsOverlapDeduped(t *testing.T) {
	e := newEnv(t)
	hour := at("2026-11-20T10:00:00Z")
	var evs []ev
	for i := range 300 {
		evs = append(evs, ev{t: hour.Add(time.Duration(i) * 11 * time.Second), oid: fmt.Sprintf("oid-%d", i%4),
			upn: fmt.Sprintf("u%d@example.com", i%3), ip: fmt.Sprintf("10.0.0.%d", i%5), object: fmt.Sprintf("s%d", i%6)})
	}
	contents := blobContents(0, evs)
	var name string
	for n, data := range contents {
		name = n
		e.appendBlob(n, data)
	}
	// Two writers racing with different chunk sizes. A writer that keeps
	// losing the checkpoint race gives up with an error, which the host
	// would retry: so does the test.
	var wg sync.WaitGroup
	for _, chunk := range []int64{16 << 10, 23 << 10} {
		in := *e.in
		in.ChunkBytes = chunk
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			for try := 0; try < 5; try++ {
				if _, err = in.IngestBlob(context.Background(), name); err == nil || !strings.Contains(err.Error(), "lost the checkpoint race") {
					break
				}
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// And the blob read again from 0 with a third chunk size, as after a
	// lost checkpoint.
	if _, err := e.tables.Client(index.TableBlobs).DeleteEntity(context.Background(), ingest.BlobPartition(name), "c|"+index.BlobKey(name), nil); err != nil {
		t.Fatal(err)
	}
	in := *e.in
	in.ChunkBytes = 5 << 10
	if _, err := in.IngestBlob(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	w := "&from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z"
	for _, sel := range []struct {
		q     string
		match func(ev) bool
	}{
		{"caller=oid-1", func(x ev) bool { return x.oid == "oid-1" }},
		{"caller=u2@example.com", func(x ev) bool { return x.upn == "u2@example.com" }},
		{"ip=10.0.0.3", func(x ev) bool { return x.ip == "10.0.0.3" }},
		{"object=s5&status=2xx", func(x ev) bool { return x.object == "s5" }},
		{"caller=oid-2&ip=10.0.0.2", func(x ev) bool { return x.oid == "oid-2" && x.ip == "10.0.0.2" }},
	} {
		wantIDs := want(evs, 0, sel.match)
		for _, limit := range []int{1, 7, 1000} {
			got, _ := e.events(fmt.Sprintf("%s%s&limit=%d", sel.q, w, limit))
			if strings.Join(got, ",") != strings.Join(wantIDs, ",") {
				t.Fatalf("%s limit %d: %d events %v\nwant %d %v", sel.q, limit, len(got), got, len(wantIDs), wantIDs)
			}
		}
		sq, err := ParseStats(mustValues(t, sel.q+w+"&by=caller"), time.Now(), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.q.Stats(context.Background(), sq)
		if err != nil {
			t.Fatal(err)
		}
		if st.Total != int64(len(wantIDs)) {
			t.Fatalf("%s: stats total %d, want %d", sel.q, st.Total, len(wantIDs))
		}
	}
	// The overlap is there: more posting entries than records × keys.
	rows := 0
	pager := e.tables.Client(index.TablePostings).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rows += len(page.Entities)
	}
	if rows < 2*(4+3+5+6) {
		t.Fatalf("%d posting rows: the test did not write overlapping postings", rows)
	}
}

// A caller across vaults and days pages newest first, every event once,
// whatever the page size.
func TestCallerPagesAcrossVaultsAndDays(t *testing.T) {
	e := newEnv(t)
	start := at("2026-11-18T22:00:00Z")
	var evs []ev
	for i := range 120 {
		evs = append(evs, ev{t: start.Add(time.Duration(i) * 23 * time.Minute), vault: []string{"vault1", "vault2", "vault3"}[i%3], oid: "alice", ip: "10.1.1.1"})
	}
	e.load(0, evs)
	wantIDs := want(evs, 0, func(ev) bool { return true })
	days := map[string]bool{}
	for _, x := range evs {
		days[x.t.Format(time.DateOnly)] = true
	}
	if len(days) < 3 {
		t.Fatalf("%d days", len(days))
	}
	for _, limit := range []int{1, 5, 39, 40, 41, 1000} {
		got, _ := e.events(fmt.Sprintf("caller=ALICE&from=2026-11-18T00:00:00Z&to=2026-11-21T00:00:00Z&limit=%d", limit))
		if strings.Join(got, ",") != strings.Join(wantIDs, ",") {
			t.Fatalf("limit %d: %v\nwant %v", limit, got, wantIDs)
		}
	}
	got, _ := e.events("caller=alice&vault=vault2&from=2026-11-18T00:00:00Z&to=2026-11-21T00:00:00Z&limit=3")
	w2 := want(evs, 0, func(x ev) bool { return x.vault == "vault2" })
	if strings.Join(got, ",") != strings.Join(w2, ",") {
		t.Fatalf("vault2: %v\nwant %v", got, w2)
	}
}
