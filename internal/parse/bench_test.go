package parse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Benchmarks run over realistic records: the 32 samples repeated with
// varied times, names and correlation ids, about 8 MB of JSON Lines. All
// report MB/s of input, so their ratios compare directly:
//
//	go test -run '^$' -bench . -benchmem ./internal/parse/

var (
	benchOnce sync.Once
	benchData []byte
)

var (
	reTime = regexp.MustCompile(`"time":"[^"]*"`)
	reName = regexp.MustCompile(`/(secrets|keys|certificates|deletedsecrets|deletedkeys)/[A-Za-z0-9-]+`)
	reCorr = regexp.MustCompile(`"correlationId":"[^"]*"`)
)

func benchInput(b *testing.B) []byte {
	benchOnce.Do(func() {
		lines := sampleLines(b)
		var buf bytes.Buffer
		start := time.Date(2024, 4, 3, 14, 0, 0, 0, time.UTC)
		for i := 0; buf.Len() < 8<<20; i++ {
			line := bytes.TrimSuffix(lines[i%len(lines)], []byte("\n"))
			ts := start.Add(time.Duration(i) * 37_123_400 * time.Nanosecond)
			line = reTime.ReplaceAll(line, []byte(`"time":"`+FormatTime(ts)+`"`))
			line = reName.ReplaceAll(line, []byte(fmt.Sprintf("/$1/object-%d", i%500)))
			line = reCorr.ReplaceAll(line, []byte(fmt.Sprintf(`"correlationId":"%08x-b866-4950-983f-46775e7fe659"`, i)))
			buf.Write(line)
			buf.WriteByte('\n')
		}
		benchData = buf.Bytes()
	})
	return benchData
}

func BenchmarkReader(b *testing.B) {
	data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rec Record
	for b.Loop() {
		p := NewReader(bytes.NewReader(data), Options{Blob: "bench"})
		n := 0
		for {
			err := p.Next(&rec)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n == 0 {
			b.Fatal("no records")
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	data := benchInput(b)
	res := readAll(b, bytes.NewReader(data), Options{Blob: "bench"})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	buf := make([]byte, 0, 64<<10)
	for b.Loop() {
		for i := range res.recs {
			buf = AppendJSON(buf[:0], &res.recs[i])
		}
	}
}

// BenchmarkPipeline is what `handler parse` does per byte: read, normalize,
// write JSON Lines.
func BenchmarkPipeline(b *testing.B) {
	data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rec Record
	w := bufio.NewWriterSize(io.Discard, 1<<20)
	var line []byte
	for b.Loop() {
		p := NewReader(bytes.NewReader(data), Options{Blob: "bench", Complete: true})
		for {
			err := p.Next(&rec)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			line = append(AppendJSON(line[:0], &rec), '\n')
			w.Write(line)
		}
	}
	w.Flush()
}

// BenchmarkNaive is the baseline: encoding/json into map[string]any and
// back, per line.
func BenchmarkNaive(b *testing.B) {
	data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s := bufio.NewScanner(bytes.NewReader(data))
		s.Buffer(make([]byte, 1<<20), 4<<20)
		for s.Scan() {
			var m map[string]any
			if err := json.Unmarshal(s.Bytes(), &m); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}
