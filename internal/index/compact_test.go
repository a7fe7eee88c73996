package index

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

var update = flag.Bool("update", false, "rewrite dict.bin from the samples")

const samples = "../parse/testdata/sekoia-intake-formats-keyvault.jsonl"

// TestDictIsCommitted: the embedded dictionary is the one BuildDict makes
// from the 32 samples; a change to either changes the layout.
func TestDictIsCommitted(t *testing.T) {
	src, err := os.ReadFile(samples)
	if err != nil {
		t.Fatal(err)
	}
	want := BuildDict(src)
	if *update {
		if err := os.WriteFile(filepath.Join(".", "dict.bin"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(RecordDict(), want) {
		t.Fatalf("dict.bin (%d bytes) is not BuildDict of %s (%d bytes): go test ./internal/index -run Dict -update", len(RecordDict()), samples, len(want))
	}
}

type sample struct {
	rec parse.Record
	raw []byte
}

func readSamples(t *testing.T) []sample {
	t.Helper()
	f, err := os.Open(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := parse.NewReader(f, parse.Options{Blob: "resourceId=/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV/y=2026/m=11/d=20/h=10/m=00/PT1H.json", Complete: true})
	var out []sample
	for {
		var rec parse.Record
		if err := p.Next(&rec); err != nil {
			break
		}
		rec.Properties = append([]byte(nil), rec.Properties...)
		rec.Identity.Claims = append([]byte(nil), rec.Identity.Claims...)
		out = append(out, sample{rec, append([]byte(nil), p.Raw()...)})
	}
	if len(out) != 32 {
		t.Fatalf("%d samples, want 32", len(out))
	}
	return out
}

func TestRecordRoundTrip(t *testing.T) {
	var d parse.Decoder
	for _, s := range readSamples(t) {
		rec := s.rec
		b := EncodeRecord(s.raw, rec.Blob)
		raw, blob, err := DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		var got parse.Record
		if err := d.Decode(raw, blob, rec.Offset, &got); err != nil {
			t.Fatal(err)
		}
		if a, b := parse.AppendJSON(nil, &rec), parse.AppendJSON(nil, &got); !bytes.Equal(a, b) {
			t.Fatalf("round trip:\n%s\n%s", a, b)
		}
	}
}

func TestPostingRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var es []Entry
	t0 := maxTicks - Ticks(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	for i := range 500 {
		es = append(es, Entry{InvTicks: t0 + int64(i)*rnd.Int64N(1e7), Offset: rnd.Int64N(1 << 30), Vault: "kv", Op: "SecretGet",
			Status: []int{200, 403, 0, -1}[i%4], Caller: "c", IP: "10.0.0.1", Object: []string{"", "a", "b"}[i%3], Client: "x"})
	}
	got, err := DecodePosting(nil, EncodePosting(es), len(es))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(es) {
		t.Fatalf("%d entries, want %d", len(got), len(es))
	}
	for i := range es {
		if got[i] != es[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], es[i])
		}
	}
	if _, err := DecodePosting(nil, []byte("garbage"), -1); err == nil {
		t.Fatal("garbage decoded")
	}
}
