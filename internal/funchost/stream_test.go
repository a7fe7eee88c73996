package funchost_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/funchost"
)

// bodyReader produces a blob-trigger body whose Data value is a base64
// string of n bytes, generated as it is read and never held. Every sample
// bytes produced it calls probe, which the memory test uses to watch the
// heap while ReadInvocation runs.
type bodyReader struct {
	parts  []string // before and after the Data value
	n      int64    // base64 bytes still to produce
	state  int
	chunk  []byte
	sample int64
	since  int64
	probe  func()
}

func newBodyReader(n int64, metadataFirst bool) *bodyReader {
	meta := `"Metadata":{"name":"\"resourceId=/SUBSCRIPTIONS/X/PT1H.json\"","Properties":{"ContentLength":1}}`
	pre, post := `{"Data":{"blob":"`, `"},`+meta+`}`
	if metadataFirst {
		pre, post = `{`+meta+`,"Data":{"blob":"`, `"}}`
	}
	chunk := bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw=="[:64]), 1024)
	return &bodyReader{parts: []string{pre, post}, n: n, chunk: chunk}
}

func (r *bodyReader) Read(p []byte) (int, error) {
	switch r.state {
	case 0:
		n := copy(p, r.parts[0])
		r.parts[0] = r.parts[0][n:]
		if r.parts[0] == "" {
			r.state++
		}
		return n, nil
	case 1:
		if r.n == 0 {
			r.state++
			return 0, nil
		}
		q := p
		if int64(len(q)) > r.n {
			q = q[:r.n]
		}
		if len(q) > len(r.chunk) {
			q = q[:len(r.chunk)]
		}
		n := copy(q, r.chunk)
		r.n -= int64(n)
		if r.probe != nil {
			if r.since += int64(n); r.since >= r.sample {
				r.since = 0
				r.probe()
			}
		}
		return n, nil
	case 2:
		n := copy(p, r.parts[1])
		r.parts[1] = r.parts[1][n:]
		if r.parts[1] == "" {
			r.state++
		}
		return n, nil
	}
	return 0, io.EOF
}

// TestReadInvocationMemory reads a 256 MiB body (32 MiB under the race
// detector: still twice the budget) and checks that the heap in use never
// grows by more than 16 MiB while it does.
func TestReadInvocationMemory(t *testing.T) {
	size := int64(256 << 20)
	if raceEnabled {
		size = 32 << 20
	}
	const budget = 16 << 20
	for _, metadataFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("metadataFirst=%v", metadataFirst), func(t *testing.T) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapInuse
			var peak uint64
			probe := func() {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			r := newBodyReader(size, metadataFirst)
			r.sample, r.probe = size/16, probe

			inv, err := funchost.ReadInvocation(r, 0)
			if err != nil {
				t.Fatal(err)
			}
			probe()
			if got := inv.DataBytes["blob"]; got != size+2 {
				t.Errorf("DataBytes[blob] = %d, want %d", got, size+2)
			}
			if name, _ := inv.String("name"); name != "resourceId=/SUBSCRIPTIONS/X/PT1H.json" {
				t.Errorf("name = %q", name)
			}
			growth := int64(peak) - int64(base)
			t.Logf("HeapInuse: base %.1f MiB, peak %.1f MiB, growth %.2f MiB over a %d MiB body",
				mib(base), mib(peak), float64(growth)/(1<<20), size>>20)
			if growth > budget {
				t.Errorf("HeapInuse grew by %.1f MiB reading a %d MiB body; want under %d MiB",
					float64(growth)/(1<<20), size>>20, budget>>20)
			}
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// BenchmarkReadInvocation measures skipping a 64 MiB Data value: base64 as
// with "dataType": "binary", and text encoded twice, where escapes are dense.
func BenchmarkReadInvocation(b *testing.B) {
	const size = 64 << 20
	b.Run("binary", func(b *testing.B) {
		var body bytes.Buffer
		r := newBodyReader(size, false)
		if _, err := io.Copy(&body, r); err != nil {
			b.Fatal(err)
		}
		benchmarkBody(b, body.Bytes())
	})
	b.Run("string", func(b *testing.B) {
		// An audit record encoded twice: each of its quotes is \\\" on the wire.
		rec := `{"time":"2026-03-01T10:00:00.0000000Z","resourceId":"/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1","operationName":"SecretGet","resultSignature":"OK","properties":{"id":"https://kv1.vault.azure.net/secrets/s/1","httpStatusCode":200}}` + "\n"
		esc := strings.NewReplacer(`\`, `\\\\`, `"`, `\\\"`, "\n", `\\n`).Replace(rec)
		var body bytes.Buffer
		body.WriteString(`{"Data":{"blob":"\"`)
		for body.Len() < size {
			body.WriteString(esc)
		}
		body.WriteString(`\""},"Metadata":{"name":"\"n\""}}`)
		benchmarkBody(b, body.Bytes())
	})
}

func benchmarkBody(b *testing.B, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	r := bytes.NewReader(body)
	for b.Loop() {
		r.Reset(body)
		if _, err := funchost.ReadInvocation(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
