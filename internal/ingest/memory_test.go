package ingest_test

import (
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

// TestMemoryFlatAcrossBlobSizes ingests a blob four times larger than
// another and checks that the peak heap grows by about the same: memory is
// bounded by chunk and batch sizes, not by the blob. It measures bytes, not
// time.
func TestMemoryFlatAcrossBlobSizes(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~25k rows to Azurite")
	}
	e := ingesttest.New(t)
	// Records with 6 KiB descriptions: bytes add up quickly while the row
	// count stays within what Azurite writes in seconds.
	desc := `,"note":"` + strings.Repeat("d", 6<<10) + `"`
	blob := func(mib int) []byte {
		var b []byte
		for i := 0; len(b) < mib<<20; i++ {
			b = append(b, ingesttest.RecordWith("vault1", hour.Add(time.Duration(i)*time.Millisecond), i, desc)...)
		}
		return b
	}
	growth := func(name string, data []byte) uint64 {
		e.Append(name, true, data)
		runtime.GC()
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(sample)
		base := sample[0].Value.Uint64()
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { samplePeakHeap(&peak, stop); close(done) }()
		res := e.Ingest(name)
		close(stop)
		<-done
		if res.To != int64(len(data)) {
			t.Fatalf("indexed to %d of %d", res.To, len(data))
		}
		if peak.Load() < base {
			return 0
		}
		return peak.Load() - base
	}
	small := growth(ingesttest.BlobName("vault1", hour), blob(4))
	large := growth(ingesttest.BlobName("vault1", hour.Add(time.Hour)), blob(16))
	t.Logf("peak live heap growth: 4 MiB blob %.1f MiB, 16 MiB blob %.1f MiB", mb(small), mb(large))
	if large > small+16<<20 {
		t.Errorf("peak heap grew %.1f MiB for 16 MiB against %.1f MiB for 4 MiB: memory follows blob size", mb(large), mb(small))
	}
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }
