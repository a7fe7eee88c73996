package ingest_test

import (
	"context"
	"os"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

var benchRecords = envInt("KVAUDIT_BENCH_RECORDS", 20000)

// BenchmarkIngest indexes a fresh blob of realistic records into Azurite
// per iteration and reports records/s, rows/s, rows per record and the
// peak heap seen while ingesting.
//
//	go test -run '^$' -bench Ingest -benchtime 3x ./internal/ingest/
func BenchmarkIngest(b *testing.B) {
	e := ingesttest.New(b)
	n := benchRecords
	data := ingesttest.Records("vault1", hour, 0, n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var recs, rows int64
	var peak atomic.Uint64
	stop := make(chan struct{})
	go samplePeakHeap(&peak, stop)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := ingesttest.BlobName("vault1", hour.Add(time.Duration(i)*time.Hour))
		e.Append(name, true, data)
		b.StartTimer()
		res, err := e.Ingester.IngestBlob(context.Background(), name)
		if err != nil {
			b.Fatal(err)
		}
		recs += res.Records
		rows += res.Entities
	}
	b.StopTimer()
	close(stop)
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(recs)/sec, "records/s")
	b.ReportMetric(float64(rows)/sec, "rows/s")
	b.ReportMetric(float64(rows)/float64(recs), "rows/record")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}

// samplePeakHeap records the largest live heap (as marked by the last GC)
// seen until stop is closed: garbage awaiting collection is not memory the
// ingest holds.
func samplePeakHeap(peak *atomic.Uint64, stop chan struct{}) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for {
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
