package query

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

type sample struct {
	rec parse.Record
	raw []byte
}

// readSamples parses every sample record of the parse package's testdata,
// with its JSON as logged.
func readSamples(t *testing.T) []sample {
	t.Helper()
	files, _ := filepath.Glob("../parse/testdata/*.json*")
	var recs []sample
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		p := parse.NewReader(f, parse.Options{Blob: name, Complete: true})
		for {
			var rec parse.Record
			err := p.Next(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				continue // the bad-lines sample
			}
			// Raw fields share the reader's buffers until the next call.
			rec.Properties = append(json.RawMessage(nil), rec.Properties...)
			rec.Extra = append(json.RawMessage(nil), rec.Extra...)
			rec.Identity.Claims = append(json.RawMessage(nil), rec.Identity.Claims...)
			recs = append(recs, sample{rec, append([]byte(nil), p.Raw()...)})
		}
		f.Close()
	}
	if len(recs) < 30 {
		t.Fatalf("%d sample records; want the parse package's samples", len(recs))
	}
	return recs
}

// Agreement: a record written as index rows and read back is the record,
// in the API's JSON, for every row it is written to.
func TestDecodeRowGivesBackTheRecord(t *testing.T) {
	var enc index.Encoder
	for _, s := range readSamples(t) {
		rec := s.rec
		want := string(parse.AppendJSON(nil, &rec))
		for _, e := range enc.Rows(nil, &rec, s.raw, "0123456789abcdef") {
			var got parse.Record
			if err := DecodeRow(e.Body, &got); err != nil {
				t.Fatalf("%s row: %v", e.Table, err)
			}
			if g := string(parse.AppendJSON(nil, &got)); g != want {
				t.Fatalf("%s row gives\n%s\nwant\n%s", e.Table, g, want)
			}
		}
	}
}

// A record whose compressed form does not fit an entity keeps its
// properties cut, as a JSON string ending with the marker.
func TestDecodeRowTruncatedRawIsAString(t *testing.T) {
	rec := readSamples(t)[0].rec
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 1500<<10)
	for i := range noise {
		noise[i] = byte(rnd.Uint32())
	}
	big := base64.StdEncoding.EncodeToString(noise) // incompressible past 1 MiB
	rec.Properties = json.RawMessage(`{"note":"` + big + `"}`)
	raw := []byte(`{"time":"2024-04-03T14:03:10.7886260Z","resourceId":"/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV","operationName":"SecretGet","properties":` + string(rec.Properties) + `}`)
	var enc index.Encoder
	rows := enc.Rows(nil, &rec, raw, "0123456789abcdef")
	if n := len(rows[0].Body); n > 1400<<10 {
		t.Fatalf("row body %d bytes: over the entity limit", n)
	}
	var got parse.Record
	if err := DecodeRow(rows[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(got.Properties, &s); err != nil {
		t.Fatalf("truncated properties are not a JSON string: %v", err)
	}
	if !strings.HasPrefix(s, `{"note":"`+big[:20]) || !strings.HasSuffix(s, index.TruncatedMarker) {
		t.Fatalf("properties %.40q…%q", s, s[len(s)-40:])
	}
	var out map[string]any
	if err := json.Unmarshal(parse.AppendJSON(nil, &got), &out); err != nil {
		t.Fatalf("event JSON is not valid: %v", err)
	}
	if _, ok := out["properties"].(string); !ok {
		t.Fatalf("properties is %T, want a string", out["properties"])
	}
}

func TestDecodeRowServiceShapes(t *testing.T) {
	// As the service returns rows: annotations, Edm.Binary as base64,
	// doubles as numbers or special strings.
	s := readSamples(t)[0]
	r := base64.StdEncoding.EncodeToString(index.EncodeRecord(s.raw, s.rec.Blob))
	for _, tt := range []struct {
		body string
		dur  string
	}{
		{`{"odata.etag":"W/x","PartitionKey":"v|20261120","RowKey":"3155378975999999999_0123456789abcdef_000000000001","V":2,"O":"SecretGet","S":200,"D@odata.type":"Edm.Double","D":12.5,"R@odata.type":"Edm.Binary","R":"` + r + `"}`, "575"},
		{`{"RowKey":"3155378975999999999_0123456789abcdef_000000000001","V":2,"D":"NaN","R":"` + r + `"}`, "575"},
	} {
		var rec parse.Record
		if err := DecodeRow([]byte(tt.body), &rec); err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		var out map[string]any
		if err := json.Unmarshal(parse.AppendJSON(nil, &rec), &out); err != nil {
			t.Fatal(err)
		}
		dur, _ := json.Marshal(out["durationMs"])
		if string(dur) != tt.dur {
			t.Errorf("%s: durationMs %s, want %s (from the record, not the column)", tt.body, dur, tt.dur)
		}
		if rec.Offset != 1 {
			t.Errorf("offset %d, want 1 (from the RowKey)", rec.Offset)
		}
	}
	var got parse.Record
	for _, bad := range []string{`[]`, `{"V":2,"RowKey":"r","R":"AAAA"}`, `{}`} {
		if err := DecodeRow([]byte(bad), &got); err == nil {
			t.Errorf("DecodeRow(%s) = nil error", bad)
		}
	}
	// A layout-1 row: refused, naming backfill.
	old := `{"PartitionKey":"v|20261120","RowKey":"3155378975999999999_0123456789abcdef_000000000001","Time":"2026-11-20T10:00:00.1234567Z","Status":200}`
	if err := DecodeRow([]byte(old), &got); !errors.Is(err, ErrOldLayout) || !strings.Contains(err.Error(), "handler backfill") {
		t.Errorf("layout-1 row: %v, want ErrOldLayout naming handler backfill", err)
	}
}
