package query

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// benchPerHour is the records per hour of the benchmark vault, over 30
// days (KVAUDIT_BENCH_PER_HOUR; Azurite indexes a few thousand rows a
// second, and each record is four rows).
var benchPerHour = func() int {
	if n, err := strconv.Atoi(os.Getenv("KVAUDIT_BENCH_PER_HOUR")); err == nil && n > 0 {
		return n
	}
	return 20
}()

var (
	benchOnce sync.Once
	benchEnv  *env
	benchEnd  = at("2026-11-21T00:00:00Z")
)

// benchData indexes 30 days of one vault, benchPerHour records an hour, once
// per test binary, through the ingest path.
func benchData(b *testing.B) *env {
	b.Helper()
	benchOnce.Do(func() {
		e := newEnv(b)
		start := benchEnd.Add(-30 * 24 * time.Hour)
		var evs []ev
		ops := []string{"SecretGet", "SecretGet", "SecretGet", "KeyGet", "SecretList", "SecretSet"}
		for h := 0; h < 30*24; h++ {
			for i := 0; i < benchPerHour; i++ {
				n := h*benchPerHour + i
				evs = append(evs, ev{t: start.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Hour/time.Duration(benchPerHour)),
					vault: "busy", op: ops[n%len(ops)], upn: fmt.Sprintf("app%d@contoso.com", n%17),
					ip: fmt.Sprintf("10.2.%d.%d", n%7, n%251), object: fmt.Sprintf("secret-%d", n%31), status: []int{200, 200, 200, 403}[n%4]})
			}
		}
		blobs := blobContents(0, evs)
		names := make([]string, 0, len(blobs))
		for name := range blobs {
			names = append(names, name)
		}
		sort.Strings(names)
		t0 := time.Now()
		e.load(0, evs)
		b.Logf("indexed %d records (%d blobs) of one vault over 30 days in %v", len(evs), len(names), time.Since(t0).Round(time.Second))
		benchEnv = e
	})
	if benchEnv == nil {
		b.Skip("benchmark data not loaded")
	}
	return benchEnv
}

// BenchmarkQueryFirstPage: the first page (100 events) of a vault over 30
// days, newest first.
//
//	go test -run '^$' -bench 'QueryFirstPage|Stats30Days' -benchtime 20x ./internal/query/
func BenchmarkQueryFirstPage(b *testing.B) {
	e := benchData(b)
	v := mustValues(b, "vault=busy&from="+benchEnd.Add(-30*24*time.Hour).Format(time.RFC3339)+"&to="+benchEnd.Format(time.RFC3339))
	eq, err := ParseEvents(v, time.Now(), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		next, err := e.q.Events(context.Background(), eq, func(*parse.Record) error { n++; return nil })
		if err != nil || n != DefaultLimit || next == "" {
			b.Fatalf("%d events, next %q, %v", n, next, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
}

// BenchmarkStats30Days: a vault's stats over 30 days, from the counts, with
// ragged edges (two partial hours read from the events).
func BenchmarkStats30Days(b *testing.B) {
	e := benchData(b)
	for _, by := range []string{ByOperation, ByCaller, ByDay} {
		b.Run(by, func(b *testing.B) {
			from := benchEnd.Add(-30*24*time.Hour + 20*time.Minute)
			v := mustValues(b, "vault=busy&by="+by+"&from="+from.Format(time.RFC3339)+"&to="+benchEnd.Add(-10*time.Minute).Format(time.RFC3339))
			sq, err := ParseStats(v, time.Now(), Limits{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var st *Stats
			for i := 0; i < b.N; i++ {
				if st, err = e.q.Stats(context.Background(), sq); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			want := int64(30*24*benchPerHour) - int64(benchPerHour)/3 - int64(benchPerHour)/6
			if st.Source != SourceCounts || st.Total < want-2 || st.Total > want+2 {
				b.Fatalf("%s: total %d from %s, want about %d from counts", by, st.Total, st.Source, want)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
			b.ReportMetric(float64(st.Total), "events")
		})
	}
}

// BenchmarkQueryFirstPageLookup: the first page (100 events) of a caller,
// an IP and an object over 7 days, newest first: the lookup, then the
// events it points at.
//
//	go test -run '^$' -bench 'QueryFirstPageLookup' -benchtime 20x ./internal/query/
func BenchmarkQueryFirstPageLookup(b *testing.B) {
	e := benchData(b)
	for _, sel := range []string{"caller=app3@contoso.com", "ip=10.2.3.3", "object=secret-7"} {
		b.Run(sel[:strings.IndexByte(sel, '=')], func(b *testing.B) {
			v := mustValues(b, sel+"&from="+benchEnd.Add(-7*24*time.Hour).Format(time.RFC3339)+"&to="+benchEnd.Format(time.RFC3339))
			eq, err := ParseEvents(v, time.Now(), Limits{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := 0
				_, err := e.q.Events(context.Background(), eq, func(*parse.Record) error { n++; return nil })
				if err != nil || n == 0 {
					b.Fatalf("%d events, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
		})
	}
}
