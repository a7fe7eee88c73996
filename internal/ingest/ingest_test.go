package ingest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"

	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

var hour = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// samples are the 32 real records of ../../shared/samples, kept in the
// parse package's testdata.
func samples(t *testing.T) []byte {
	t.Helper()
	matches, _ := filepath.Glob("../parse/testdata/*keyvault*.jsonl")
	if len(matches) == 0 {
		t.Fatal("sample records not found under ../parse/testdata")
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSamplesIndexedOnceWithLookups(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("testpermissionvault", hour)
	e.Append(name, true, samples(t))

	res := e.Ingest(name)
	if res.Records != 32 || res.BadRecords != 0 || res.To != e.BlobLength(name) {
		t.Fatalf("result %+v, want 32 records to the end", res)
	}
	events := e.Rows(index.TableEvents)
	if len(events) != 32 {
		t.Fatalf("%d event rows, want 32", len(events))
	}
	// Quirks: resultType says Success on a 403; the outcome is the status.
	var forbidden, longClaims int
	for _, row := range events {
		if row["ResultType"] == "Success" && row["Status"] == float64(403) {
			forbidden++
		}
		if row["OperationName"] == "VaultGet" && row["ObjectId"] != nil {
			longClaims++
		}
		pk := row["PartitionKey"].(string)
		day, _ := time.Parse("2006-01-02T15:04:05.0000000Z", row["Time"].(string))
		if want := index.Partition(row["Vault"].(string), day); pk != want {
			t.Errorf("row in %q, want %q (record's own day)", pk, want)
		}
	}
	if forbidden == 0 {
		t.Error("no 403 row with resultType Success: outcome not taken from the status")
	}
	if longClaims == 0 {
		t.Error("no VaultGet with an objectId: long-URI claims not read")
	}
	// Every posting entry points at an event row, and every event is
	// under its caller, and under its IP and object when it has them.
	kinds := map[string]int{}
	pointed := map[string]int{}
	for _, r := range e.Rows(index.TablePostings) {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var pr index.PostingRow
		es, err := index.DecodePostingRow(nil, raw, &pr)
		if err != nil {
			t.Fatal(err)
		}
		pk := r["PartitionKey"].(string)
		kind, day, _ := strings.Cut(pk, "|")
		if int(r[index.PropCount].(float64)) != len(es) {
			t.Fatalf("posting %v: bad count", r["RowKey"])
		}
		for _, en := range es {
			key := en.EventPartition(day) + "/" + en.EventRowKey()
			if _, ok := events[key]; !ok {
				t.Errorf("%s posting %v points at %s: no such event", kind, r["RowKey"], key)
			}
			kinds[kind]++
			if kind == index.KindCaller {
				pointed[key]++
			}
		}
	}
	if kinds[index.KindCaller] < 32 || kinds[index.KindIP] == 0 || kinds[index.KindObject] == 0 {
		t.Errorf("posting entries by kind %v", kinds)
	}
	for key, ev := range events {
		if ev[index.PropObjectID] != nil && pointed[key] == 0 {
			t.Errorf("event %s is in no caller posting", key)
		}
	}
	// The samples are of other vaults and days than the blob's: each is
	// counted in a row of its own, where stats reads its vault and hour.
	cp := checkpoint(e, name)
	if cp.Records != 32 || allCounts(e) != 32 || cp.Offset != e.BlobLength(name) {
		t.Errorf("checkpoint records=%d counts=%d (beside the checkpoint %d) offset=%d", cp.Records, allCounts(e), total(cp.Counts), cp.Offset)
	}
}

func TestReinvokedBlobAddsNothing(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 50))
	e.Ingest(name)
	before := e.Rows(index.TableEvents)

	for i := 0; i < 3; i++ {
		res := e.Ingest(name)
		if res.Skipped != "up to date" || res.Records != 0 {
			t.Fatalf("re-invocation %d: %+v", i, res)
		}
	}
	if after := e.Rows(index.TableEvents); len(after) != len(before) || len(after) != 50 {
		t.Fatalf("rows %d → %d, want 50", len(before), len(after))
	}
	// Deleting the checkpoint makes the next run read from 0: same rows,
	// counts rebuilt, still no duplicates.
	_, err := e.Tables.Client(index.TableBlobs).DeleteEntity(context.Background(), ingest.BlobPartition(name), ingest.CheckpointRowKey(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := e.Ingest(name); res.Records != 50 || res.From != 0 {
		t.Fatalf("after checkpoint loss: %+v", res)
	}
	if after := e.Rows(index.TableEvents); len(after) != 50 {
		t.Fatalf("%d rows after re-reading from 0, want 50", len(after))
	}
	if cp := checkpoint(e, name); cp.Records != 50 || total(cp.Counts) != 50 {
		t.Fatalf("checkpoint records=%d counts=%d, want 50", cp.Records, total(cp.Counts))
	}
}

func TestUnterminatedTailCompletedLater(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	full := ingesttest.Records("vault1", hour, 0, 10)
	cut := bytes.Index(full, []byte("c-000007")) // inside record 7
	e.Append(name, true)                         // created empty, as Event Grid sees it
	if res := e.Ingest(name); res.Records != 0 || res.Skipped != "up to date" {
		t.Fatalf("empty blob: %+v", res)
	}
	e.Append(name, false, full[:cut])
	res := e.Ingest(name)
	if res.Records != 7 {
		t.Fatalf("first part: %d records, want 7 (the cut one waits)", res.Records)
	}
	if cp := checkpoint(e, name); cp.Offset >= int64(cut) || full[cp.Offset-1] != '\n' {
		t.Fatalf("checkpoint %d is not at a record end before the cut at %d", cp.Offset, cut)
	}
	e.Append(name, false, full[cut:])
	if res := e.Ingest(name); res.Records != 3 {
		t.Fatalf("second part: %d records, want 3", res.Records)
	}
	if n := len(e.Rows(index.TableEvents)); n != 10 {
		t.Fatalf("%d rows, want 10", n)
	}
}

func TestFormatsAndLineEndings(t *testing.T) {
	one := string(bytes.TrimSpace(ingesttest.Record("vault1", hour, 1)))
	two := string(bytes.TrimSpace(ingesttest.Record("vault1", hour.Add(time.Minute), 2)))
	tests := []struct {
		name string
		blob string
		want int64
	}{
		{"json lines", one + "\n" + two + "\n", 2},
		{"bom crlf blank lines", "\ufeff" + one + "\r\n\r\n  \r\n" + two + "\r\n\n", 2},
		{"legacy document", `{"records":[` + one + "," + two + "]}", 2},
		{"legacy pretty printed", "{\n  \"records\": [\n    " + one + ",\n    " + two + "\n  ]\n}\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ingesttest.New(t)
			name := ingesttest.BlobName("vault1", hour)
			e.Append(name, true, []byte(tt.blob))
			res := e.Ingest(name)
			if res.Records != tt.want || res.BadRecords != 0 {
				t.Fatalf("%+v, want %d records", res, tt.want)
			}
			if n := len(e.Rows(index.TableEvents)); int64(n) != tt.want {
				t.Fatalf("%d rows, want %d", n, tt.want)
			}
			if res := e.Ingest(name); res.Records != 0 {
				t.Fatalf("second run indexed %d", res.Records)
			}
		})
	}
}

func TestDayBoundaryPartitions(t *testing.T) {
	e := ingesttest.New(t)
	last := time.Date(2026, 11, 20, 23, 59, 59, 999999900, time.UTC)
	first := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	name := ingesttest.BlobName("vault1", time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC))
	e.Append(name, true, append(ingesttest.Record("vault1", last, 1), ingesttest.Record("vault1", first, 2)...))
	e.Ingest(name)
	days := map[string]string{}
	for _, r := range e.Rows(index.TableEvents) {
		days[r["PartitionKey"].(string)] = r["Time"].(string)
	}
	if days["vault1|20261120"] != "2026-11-20T23:59:59.9999999Z" || days["vault1|20261121"] != "2026-11-21T00:00:00.0000000Z" {
		t.Fatalf("partitions: %v", days)
	}
}

func TestBadRecordsSkippedAndReported(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	good := ingesttest.Records("vault1", hour, 0, 3)
	lines := bytes.SplitAfter(good, []byte("\n"))
	var blob []byte
	var badAt []int64
	bad := []string{"not json at all\n", "[1,2,3]\n", `{"operationName":"NoTime"}` + "\n", `{"time":"yesterday"}` + "\n", `{"time":"2026-11-20T10:00:00Z",` + "\n"}
	for i, b := range bad {
		badAt = append(badAt, int64(len(blob)))
		blob = append(blob, b...)
		if i < len(lines) {
			blob = append(blob, lines[i]...)
		}
	}
	e.Append(name, true, blob)
	res := e.Ingest(name)
	if res.Records != 3 || res.BadRecords != int64(len(bad)) {
		t.Fatalf("%+v, want 3 good and %d bad", res, len(bad))
	}
	for i, b := range res.Bad {
		if b.Offset != badAt[i] || b.Blob != name || b.Reason == "" {
			t.Errorf("bad record %d reported at %d (%q), want byte %d", i, b.Offset, b.Reason, badAt[i])
		}
	}
	if cp := checkpoint(e, name); cp.BadRecords != int64(len(bad)) || cp.Records != 3 {
		t.Errorf("checkpoint records=%d bad=%d", cp.Records, cp.BadRecords)
	}
}

// Large values are kept whole while the compressed record fits an entity;
// past that (an incompressible megabyte) properties are cut, with the
// marker, and the record is still indexed.
func TestOversizedFieldsTruncatedRecordKept(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	big := strings.Repeat("é", 100_000)    // 100 K UTF-16 units: over layout 1's property limit
	huge := strings.Repeat("x", 1_500_000) // over an entity's limit uncompressed
	noise := make([]byte, 1_200_000)
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := range noise {
		noise[i] = byte(rnd.Uint32())
	}
	random := base64.StdEncoding.EncodeToString(noise) // over an entity's limit compressed
	blob := append(ingesttest.RecordWith("vault1", hour, 1, `,"note":"`+big+`"`), ingesttest.RecordWith("vault1", hour.Add(time.Second), 2, `,"blob":"`+huge+`"`)...)
	blob = append(blob, ingesttest.RecordWith("vault1", hour.Add(2*time.Second), 3, `,"noise":"`+random+`"`)...)
	blob = append(blob, ingesttest.Record("vault1", hour.Add(3*time.Second), 4)...)
	e.Append(name, true, blob)
	res := e.Ingest(name)
	if res.Records != 4 || res.Rejected != 0 {
		t.Fatalf("%+v, want 4 records and nothing refused", res)
	}
	var truncated, whole int
	for _, r := range e.Rows(index.TableEvents) {
		props, _ := r[index.PropProperties].(string)
		if tr, _ := r["Truncated"].(string); strings.Contains(tr, "Properties") {
			truncated++
			var s string
			if err := json.Unmarshal([]byte(props), &s); err != nil || !strings.HasSuffix(s, index.TruncatedMarker) {
				t.Errorf("truncated Properties is not a string with the marker (%v)", err)
			}
			continue
		}
		if strings.Contains(props, big) || strings.Contains(props, huge) {
			whole++
		}
	}
	if truncated != 1 || whole != 2 {
		t.Fatalf("%d rows with truncated Properties (want 1), %d large values kept whole (want 2)", truncated, whole)
	}
}

func TestConcurrentInvocationsNeitherLoseNorDouble(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	const n = 400
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, n))

	var wg sync.WaitGroup
	results := make([]ingest.Result, 4)
	errs := make([]error, 4)
	for i := range results {
		// Different chunk sizes put the instances' checkpoints at different
		// offsets, so a loser often finds the winner inside its own chunk.
		in := *e.Ingester
		in.ChunkBytes = int64(8+5*i) << 10
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = in.IngestBlob(context.Background(), name)
		}()
	}
	wg.Wait()
	var sum int64
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		sum += r.Records
	}
	t.Logf("results: %+v", results)
	if sum != n {
		t.Errorf("instances counted %d records together, want %d (results %+v)", sum, n, results)
	}
	cp := checkpoint(e, name)
	if cp.Records != n || total(cp.Counts) != n || cp.Offset != e.BlobLength(name) {
		t.Errorf("checkpoint records=%d counts=%d offset=%d", cp.Records, total(cp.Counts), cp.Offset)
	}
	if rows := len(e.Rows(index.TableEvents)); rows != n {
		t.Errorf("%d rows, want %d", rows, n)
	}
}

func TestRecreatedBlobReadFromZero(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, 5))
	e.Ingest(name)
	time.Sleep(1100 * time.Millisecond) // creation times have 1 s resolution
	if _, err := e.Container.NewBlobClient(name).Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	e.Append(name, true, ingesttest.Records("vault1", hour.Add(time.Hour/2), 0, 3))
	res := e.Ingest(name)
	if res.From != 0 || res.Records != 3 {
		t.Fatalf("%+v, want 3 records read from 0", res)
	}
	if rows := len(e.Rows(index.TableEvents)); rows != 8 {
		t.Fatalf("%d rows, want 8: the old lineage's rows stay", rows)
	}
	if cp := checkpoint(e, name); cp.Records != 3 || total(cp.Counts) != 3 {
		t.Fatalf("checkpoint records=%d counts=%d", cp.Records, total(cp.Counts))
	}
}

func TestMissingBlobIsNotAnError(t *testing.T) {
	e := ingesttest.New(t)
	res := e.Ingest(ingesttest.BlobName("vault1", hour))
	if res.Skipped != "blob not found" {
		t.Fatalf("%+v", res)
	}
}

// A listing older than the checkpoint (another writer read further since)
// must not look like a shrunk blob: nothing is reset or read again.
func TestStaleListingDoesNotResetCheckpoint(t *testing.T) {
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	first := ingesttest.Records("vault1", hour, 0, 20)
	e.Append(name, true, first)
	e.Ingest(name)
	p, err := e.Container.NewBlobClient(name).GetProperties(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stale := ingest.BlobInfo{Length: int64(len(first)) / 2, ETag: "\"stale\"", CreatedOn: *p.CreationTime}
	res, err := e.Ingester.Ingest(context.Background(), name, ingest.Options{Blob: &stale, StopBy: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 0 || res.Skipped != "up to date" {
		t.Fatalf("stale listing: %+v", res)
	}
	cp := checkpoint(e, name)
	if cp.Offset != int64(len(first)) || cp.Records != 20 || total(cp.Counts) != 20 {
		t.Fatalf("checkpoint offset=%d records=%d counts=%d after a stale listing", cp.Offset, cp.Records, total(cp.Counts))
	}
}

// Thousands of distinct IPs in one hour still commit in one
// transaction: keys past index.MaxKeysPerDim count under index.OtherKey,
// and totals stay exact.
func TestManyDistinctKeysStillCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~15k rows")
	}
	e := ingesttest.New(t)
	name := ingesttest.BlobName("vault1", hour)
	const n = 2500 // 1,750 distinct caller IPs
	e.Append(name, true, ingesttest.Records("vault1", hour, 0, n))
	if res := e.Ingest(name); res.Records != n {
		t.Fatalf("%+v", res)
	}
	cp := checkpoint(e, name)
	if total(cp.Counts) != n {
		t.Fatalf("counts total %d, want %d", total(cp.Counts), n)
	}
	for _, h := range cp.Counts.Hours {
		if ips := h.Dims[index.DimIP]; len(ips) > index.MaxKeysPerDim+1 || ips[index.OtherKey] == 0 {
			t.Fatalf("%d IP keys, other=%d", len(ips), ips[index.OtherKey])
		}
	}
}

// Records older than the retention cutoff are counted, not indexed, once
// per lineage however often the blob is read; the cutoff is retention's,
// midnight UTC RetentionDays ago, to the 100 ns.
func TestRecordsOlderThanRetentionCountedNotIndexed(t *testing.T) {
	e := ingesttest.New(t)
	clock := time.Date(2026, 11, 20, 10, 30, 0, 0, time.UTC)
	e.Ingester.RetentionDays = 30
	e.Ingester.Now = func() time.Time { return clock }
	cutoff := ingest.RetentionCutoff(clock, 30)
	if want := time.Date(2026, 10, 21, 0, 0, 0, 0, time.UTC); !cutoff.Equal(want) {
		t.Fatalf("cutoff %s, want %s", cutoff, want)
	}
	name := ingesttest.BlobName("vault1", hour)
	var data []byte
	for i, at := range []time.Time{cutoff.Add(-100 * time.Nanosecond), cutoff, cutoff.AddDate(-1, 0, 0), hour, hour.Add(time.Minute)} {
		data = append(data, ingesttest.Record("vault1", at, i)...)
	}
	e.Append(name, true, data)
	res := e.Ingest(name)
	if res.Records != 3 || res.TooOld != 2 || !res.RetentionCutoff.Equal(cutoff) {
		t.Fatalf("result %+v, want 3 records and 2 too old", res)
	}
	if got := e.CountEvents(); len(got) != 3 || got["c-000000"] != 0 || got["c-000002"] != 0 {
		t.Fatalf("events %v, want c-000001, c-000003 and c-000004", got)
	}
	// Read again from 0: the checkpoint still says 2, not 4.
	if _, err := e.Tables.Client(index.TableBlobs).DeleteEntity(context.Background(), ingest.BlobPartition(name), ingest.CheckpointRowKey(name), nil); err != nil {
		t.Fatal(err)
	}
	e.Ingest(name)
	if cp := checkpoint(e, name); cp.TooOld != 2 || cp.Records != 3 {
		t.Fatalf("checkpoint too old %d records %d, want 2 and 3", cp.TooOld, cp.Records)
	}
}
