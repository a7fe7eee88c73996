package parse

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"testing"
	"unicode/utf8"
)

// chunkReader returns at most n bytes per Read, to move buffer boundaries.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

func addSeeds(f *testing.F, add func(b []byte)) {
	for _, name := range []string{samplesFile, "testdata/legacy-document.json", "testdata/bad-lines.jsonl"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// Small seeds keep each run short: a few lines, not whole files.
		add(b[:min(len(b), 4<<10)])
		for _, line := range bytes.SplitAfter(b, []byte("\n"))[:3] {
			add(line)
		}
	}
	for _, s := range agreementSeeds {
		add([]byte(s))
	}
}

// FuzzReader feeds arbitrary bytes to a Reader: it must not panic, keep
// Consumed monotone and within the input, return records and errors in
// increasing offset order, produce valid JSON, read the same whatever the
// read sizes, and, for JSON Lines, give the same records when the input is
// cut anywhere and resumed from Consumed.
func FuzzReader(f *testing.F) {
	addSeeds(f, func(b []byte) {
		f.Add(b, false)
		f.Add(b, true)
	})
	f.Fuzz(checkReader)
}

func checkReader(t *testing.T, data []byte, small bool) {
	{
		opt := Options{Blob: "fuzz"}
		if small {
			opt.MaxRecordBytes = 64
		}
		for _, complete := range []bool{false, true} {
			opt.Complete = complete
			whole := readAll(t, bytes.NewReader(data), opt)
			checkResult(t, data, whole)
			chunked := readAll(t, &chunkReader{bytes.NewReader(data), 1 + len(data)%13}, opt)
			if !reflect.DeepEqual(whole, chunked) {
				t.Fatalf("complete=%v: chunked reads differ from whole reads", complete)
			}
		}
		opt.Complete = false
		whole := readAll(t, bytes.NewReader(data), opt)
		if whole.format == FormatDocument {
			return // a broken document is given up differently when cut
		}
		// Every cut of a short input; for longer ones, a few spread out and
		// around the first line ends (the work per input must stay small).
		var cuts []int
		switch {
		case len(data) <= 64:
			for c := 0; c <= len(data); c++ {
				cuts = append(cuts, c)
			}
		default:
			k := 16
			if len(data) > 64<<10 {
				k = 4
			}
			for j := 0; j <= k; j++ {
				cuts = append(cuts, len(data)*j/k)
			}
			for i, c := range data[:min(len(data), 256)] {
				if c == '\n' && len(cuts) < 40 {
					cuts = append(cuts, i, i+1)
				}
			}
		}
		for _, cut := range cuts {
			first := readAll(t, bytes.NewReader(data[:cut]), opt)
			if first.format == FormatDocument {
				continue // the prefix looks like a document; the whole did not
			}
			ropt := opt
			ropt.BaseOffset, ropt.Format = first.consumed, first.format
			rest := readAll(t, bytes.NewReader(data[first.consumed:]), ropt)
			if got := append(first.recs, rest.recs...); !reflect.DeepEqual(got, whole.recs) {
				t.Fatalf("cut at %d, Consumed %d: %d+%d records, want %d", cut, first.consumed, len(first.recs), len(rest.recs), len(whole.recs))
			}
			if got := append(first.errs, rest.errs...); !reflect.DeepEqual(got, whole.errs) {
				t.Fatalf("cut at %d, Consumed %d: errors %v, want %v", cut, first.consumed, got, whole.errs)
			}
			if rest.consumed != whole.consumed {
				t.Fatalf("cut at %d: Consumed %d, want %d", cut, rest.consumed, whole.consumed)
			}
		}
	}
}

func checkResult(t *testing.T, data []byte, res result) {
	t.Helper()
	if res.consumed < 0 || res.consumed > int64(len(data)) {
		t.Fatalf("Consumed %d outside [0, %d]", res.consumed, len(data))
	}
	var offs []int64
	for _, rec := range res.recs {
		offs = append(offs, rec.Offset)
		if rec.Offset < 0 || rec.Offset >= int64(len(data)) || data[rec.Offset] != '{' {
			t.Fatalf("record Offset %d is not at a '{'", rec.Offset)
		}
		out := AppendJSON(nil, &rec)
		if !json.Valid(out) || !utf8.Valid(out) || bytes.IndexByte(out, '\n') >= 0 {
			t.Fatalf("AppendJSON output is not one line of valid JSON: %q", out)
		}
		if rec.Time.Location().String() != "UTC" {
			t.Fatalf("time not in UTC: %v", rec.Time)
		}
	}
	for _, e := range res.errs {
		if e.Offset < 0 || e.Offset > int64(len(data)) {
			t.Fatalf("RecordError Offset %d outside the input", e.Offset)
		}
	}
	// Records and errors interleave; each list on its own is increasing.
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			t.Fatalf("record offsets not increasing: %v", offs)
		}
	}
	for i := 1; i < len(res.errs); i++ {
		if res.errs[i].Offset <= res.errs[i-1].Offset {
			t.Fatalf("error offsets not increasing: %v", res.errs)
		}
	}
}

// FuzzAgreement checks the hand-written scanner against encoding/json on
// single lines: both must agree on validity and on every extracted field.
// The seeds, and every line found failing once, run in the normal tests.
func FuzzAgreement(f *testing.F) {
	addSeeds(f, func(b []byte) {
		for _, line := range bytes.Split(b, []byte("\n")) {
			f.Add(line)
		}
	})
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 || len(line) > 1<<20 || len(bytes.Trim(line, " \t\r")) == 0 {
			return // not one line, or a blank line: no record by design
		}
		// The validator AppendJSON uses on raw values judges as json.Valid.
		if got, want := validJSON(line), json.Valid(line); got != want {
			t.Fatalf("validJSON %v, json.Valid %v: %q", got, want, line)
		}
		agree(t, line, "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/BLOBVAULT")
	})
}
