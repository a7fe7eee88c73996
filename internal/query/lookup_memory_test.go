package query

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Issue 15, item 2: a lookup page keeps what it returns, not the key's
// day. One IP with n entries on one day (its index rows written straight
// through the index package, as ingest writes them: the posting rows of
// every entry, the Events rows of the newest 200): the first page of
// events?ip= must not take more heap at 60,000 entries than at 15,000.
// Before, the page decoded and held every entry of the day, ~0.6 GB per
// million.
func TestLookupMemoryDoesNotGrowWithTheDay(t *testing.T) {
	peak := map[int]uint64{}
	for _, n := range []int{15_000, 60_000} {
		e := newEnv(t)
		day := time.Now().UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
		writeLookupDay(t, e, day, n)
		eq, err := ParseEvents(mustValues(t, "ip=203.0.113.99&limit=100&from="+day.Format(time.RFC3339)+"&to="+day.AddDate(0, 0, 1).Format(time.RFC3339)), time.Now(), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		var qerr error
		peak[n] = peakHeapDuring(func() {
			_, qerr = e.q.Events(context.Background(), eq, func(*parse.Record) error { got++; return nil })
		})
		if qerr != nil || got != 100 {
			t.Fatalf("%d entries: first page %d events, %v", n, got, qerr)
		}
		t.Logf("%d entries of one IP on one day: first page of 100, peak heap %d KiB above idle", n, peak[n]>>10)
	}
	if grew := int64(peak[60_000]) - int64(peak[15_000]); grew > 4<<20 {
		t.Errorf("a lookup over 4× the key's day took %d MiB more heap", grew>>20)
	}
}

// writeLookupDay writes n entries of IP 203.0.113.99 over day, in chunks
// of 3,000 records, with the Events rows of the newest 200.
func writeLookupDay(t *testing.T, e *env, day time.Time, n int) {
	t.Helper()
	ctx := context.Background()
	if err := e.tables.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	const source = "00a1b2c3d4e5f6a7"
	blob := blobName("vault1", day)
	w := e.tables.NewWriter(slog.New(slog.DiscardHandler), 8, 0)
	var (
		post index.Postings
		enc  index.Encoder
		rec  parse.Record
		rows []index.Entity
	)
	flush := func(chunk int64) {
		for _, r := range post.Rows(rows[:0], chunk) {
			if err := w.Add(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	step := 24 * time.Hour / time.Duration(n)
	for i := range n {
		tm := day.Add(time.Duration(i) * step)
		line := ev{t: tm, status: 401, ip: "203.0.113.99", object: "db-password", client: fmt.Sprintf("probe/%d", i)}.line(i)
		p := parse.NewReader(bytes.NewReader(line), parse.Options{Blob: blob, BaseOffset: int64(i) * 1000, Format: parse.FormatJSONLines, Complete: true})
		if err := p.Next(&rec); err != nil {
			t.Fatal(err)
		}
		if i >= n-200 {
			for _, r := range enc.Rows(nil, &rec, p.Raw(), source) {
				if err := w.Add(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			enc.Postings(nil, 0)
		}
		post.Add(&rec, source)
		if (i+1)%3000 == 0 {
			flush(int64(i+1-3000) * 1000)
		}
	}
	flush(int64(n-n%3000) * 1000)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
