package ingest

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

var benchRecords = envInt("KVAUDIT_BENCH_RECORDS", 20000)

// BenchmarkIngest indexes a fresh blob of realistic records into Azurite
// per iteration and reports records/s, rows/s, rows per record and the
// peak heap seen while ingesting.
//
//	go test -run '^$' -bench Ingest -benchtime 3x ./internal/ingest/
func BenchmarkIngest(b *testing.B) {
	e := newEnv(b)
	n := benchRecords
	data := records("vault1", hour, n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var recs, rows int64
	var peak atomic.Uint64
	stop := make(chan struct{})
	go samplePeakHeap(&peak, stop)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := blobName("vault1", hour.Add(time.Duration(i)*time.Hour))
		e.appendBlob(name, true, data)
		b.StartTimer()
		res, err := e.in.IngestBlob(context.Background(), name)
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

func samplePeakHeap(peak *atomic.Uint64, stop chan struct{}) {
	var ms runtime.MemStats
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.Load() {
			peak.Store(ms.HeapInuse)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
