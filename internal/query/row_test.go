package query

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// readSamples parses every sample record of the parse package's testdata.
func readSamples(t *testing.T) []parse.Record {
	t.Helper()
	files, _ := filepath.Glob("../parse/testdata/*.json*")
	var recs []parse.Record
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
			recs = append(recs, rec)
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
	for _, rec := range readSamples(t) {
		want := string(parse.AppendJSON(nil, &rec))
		for _, e := range enc.Rows(nil, &rec, "0123456789abcdef") {
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

func TestDecodeRowTruncatedRawIsAString(t *testing.T) {
	rec := readSamples(t)[0]
	big := strings.Repeat("é", 40000)
	rec.Properties = json.RawMessage(`{"note":"` + big + `"}`)
	var enc index.Encoder
	rows := enc.Rows(nil, &rec, "0123456789abcdef")
	var got parse.Record
	if err := DecodeRow(rows[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(got.Properties, &s); err != nil {
		t.Fatalf("truncated properties are not a JSON string: %v", err)
	}
	if !strings.HasPrefix(s, `{"note":"éé`) || !strings.HasSuffix(s, index.TruncatedMarker) {
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
	// As the service returns rows: annotations, Int64 as strings, doubles
	// as numbers or special strings, properties absent.
	for _, tt := range []struct {
		body string
		dur  string
	}{
		{`{"odata.etag":"W/x","PartitionKey":"v|20261120","RowKey":"3155378975999999999_0123456789abcdef_000000000001","Time":"2026-11-20T10:00:00.1234567Z","Offset@odata.type":"Edm.Int64","Offset":"42","DurationMs@odata.type":"Edm.Double","DurationMs":12.5,"Status":200}`, "12.5"},
		{`{"RowKey":"x","Time":"2026-11-20T10:00:00Z","Offset":7,"DurationMs":"NaN"}`, "null"},
		{`{"RowKey":"x","Time":"2026-11-20T10:00:00Z","DurationMs":3}`, "3"},
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
			t.Errorf("%s: durationMs %s, want %s", tt.body, dur, tt.dur)
		}
	}
	var rec parse.Record
	for _, bad := range []string{`[]`, `{"Offset":"x","RowKey":"r"}`, `{}`} {
		if err := DecodeRow([]byte(bad), &rec); err == nil {
			t.Errorf("DecodeRow(%s) = nil error", bad)
		}
	}
}
