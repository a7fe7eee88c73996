package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const samplesFile = "testdata/sekoia-intake-formats-keyvault.jsonl"

// result is everything a Reader gave, with raw fields copied so they
// outlive the Reader's buffers.
type result struct {
	recs     []Record
	errs     []*RecordError
	consumed int64
	format   Format
}

func readAll(t testing.TB, r io.Reader, opt Options) result {
	t.Helper()
	p := NewReader(r, opt)
	var res result
	last := opt.BaseOffset
	for n := 0; ; n++ {
		if n > 1e6 {
			t.Fatal("Next does not end")
		}
		var rec Record
		err := p.Next(&rec)
		if c := p.Consumed(); c < last {
			t.Fatalf("Consumed went back from %d to %d", last, c)
		}
		last = p.Consumed()
		var re *RecordError
		switch {
		case err == nil:
			res.recs = append(res.recs, detach(rec))
		case errors.As(err, &re):
			res.errs = append(res.errs, re)
		case err == io.EOF:
			res.consumed, res.format = p.Consumed(), p.Format()
			// io.EOF is sticky.
			if err := p.Next(&rec); err != io.EOF {
				t.Fatalf("Next after io.EOF = %v", err)
			}
			return res
		default:
			t.Fatalf("Next: %v", err)
		}
	}
}

func detach(rec Record) Record {
	rec.Properties = bytes.Clone(rec.Properties)
	rec.Extra = bytes.Clone(rec.Extra)
	rec.Identity.Claims = bytes.Clone(rec.Identity.Claims)
	return rec
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleLines(t testing.TB) [][]byte {
	return bytes.SplitAfter(bytes.TrimSuffix(readFile(t, samplesFile), []byte("\n")), []byte("\n"))
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC()
}

func TestSamples(t *testing.T) {
	data := readFile(t, samplesFile)
	res := readAll(t, bytes.NewReader(data), Options{Blob: "samples"})
	if len(res.errs) > 0 || len(res.recs) != 32 {
		t.Fatalf("got %d records, errors %v; want 32 records", len(res.recs), res.errs)
	}
	if res.consumed != int64(len(data)) || res.format != FormatJSONLines {
		t.Errorf("Consumed %d, Format %v; want %d, jsonl", res.consumed, res.format, len(data))
	}
	lines := sampleLines(t)
	off := int64(0)
	for i, rec := range res.recs {
		if rec.Offset != off || rec.Blob != "samples" {
			t.Errorf("record %d: Offset %d Blob %q, want %d %q", i, rec.Offset, rec.Blob, off, "samples")
		}
		off += int64(len(lines[i]))
		if rec.Category != "AuditEvent" || rec.Time.IsZero() || rec.Time.Location() != time.UTC || rec.Vault == "" {
			t.Errorf("record %d: %+v", i, rec)
		}
		if !json.Valid(AppendJSON(nil, &rec)) {
			t.Errorf("record %d: AppendJSON output is not valid JSON", i)
		}
	}

	r := res.recs
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"0 time", r[0].Time, mustTime(t, "2024-04-03T14:03:10.788626Z")},
		{"0 vault", r[0].Vault, "testpermissionvault"},
		{"0 subscription", r[0].SubscriptionID, "F40A1F1D-F2C6-4444-XXXX"},
		{"0 resource group", r[0].ResourceGroup, "INTEGRATION"},
		{"0 duration string", [2]any{r[0].DurationMs, r[0].HasDuration}, [2]any{575.0, true}},
		{"0 status accepted", [2]int{r[0].HTTPStatusCode, r[0].Status}, [2]int{202, 202}},
		{"0 object", [2]string{r[0].ObjectType, r[0].ObjectName}, [2]string{"certificate", "fdfdffffd"}},
		{"0 oid", r[0].Identity.ObjectID, "d4ba3e84-0444-4841-aaf7-XXXX"},
		{"0 upn", r[0].Identity.UPN, "john.doe@dummy.onmicrosoft.com"},
		{"0 appid", r[0].Identity.AppID, "3686488a-04fc-4d8a-b967-61f98ec41efe"},
		{"0 tls", r[0].TLSVersion, "TLS1_3"},
		{"0 client", r[0].ClientInfo, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) Firefox/12.0"},
		{"1 bad request", [3]any{r[1].ResultType, r[1].ResultSignature, r[1].Status}, [3]any{"Success", "Bad Request", 400}},
		{"7 not found", [2]any{r[7].ResultSignature, r[7].Status}, [2]any{"Not Found", 404}},
		{"10 forbidden with Success", [3]any{r[10].ResultType, r[10].HTTPStatusCode, r[10].Status}, [3]any{"Success", 403, 403}},
		{"9 key collection", [2]string{r[9].ObjectType, r[9].ObjectName}, [2]string{"", ""}},
		{"13 deleted key", [2]string{r[13].ObjectType, r[13].ObjectName}, [2]string{"key", "MyFirstKey"}},
		{"24 conflict", r[24].Status, 409},
		{"24 restore named by id", [2]string{r[24].ObjectType, r[24].ObjectName}, [2]string{"secret", "keykey"}},
		{"25 secret version", r[25].ObjectName, "keykey"},
		{"26 long-URI oid", r[26].Identity.ObjectID, "d4ba3e84-0444-4841-aaf7-XXXXX"},
		{"26 long-URI upn", r[26].Identity.UPN, "john.doe@dummy.onmicrosoft.com"},
		{"26 vault get has no object", r[26].ObjectName, ""},
		{"27 numeric duration", [2]any{r[27].DurationMs, r[27].HasDuration}, [2]any{17.0, true}},
		{"29 signature Forbidden, status 200", [2]any{r[29].ResultSignature, r[29].Status}, [2]any{"Forbidden", 200}},
		{"31 long-URI upn", r[31].Identity.UPN, "john.doe@dummy.onmicrosoft.com"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if d := r[19].ResultDescription; !strings.Contains(d, "\n") {
		t.Errorf("record 19: multi-line resultDescription lost its newlines: %q", d)
	}
	if !bytes.Contains(r[0].Properties, []byte(`"certificatePolicyProperties":{"certificateProperties":{"subject":"CN=GHEG FFF"`)) {
		t.Errorf("record 0: nested properties not kept: %s", r[0].Properties)
	}
	if !bytes.Contains(r[0].Identity.Claims, []byte(`"xms_az_nwperimid":[]`)) {
		t.Errorf("record 0: claims not kept raw: %s", r[0].Identity.Claims)
	}
	for i, rec := range r {
		if rec.Extra != nil {
			t.Errorf("record %d: unexpected Extra %s", i, rec.Extra)
		}
	}
}

func TestLineHandling(t *testing.T) {
	lines := sampleLines(t)
	a, b := bytes.TrimSpace(lines[0]), bytes.TrimSpace(lines[1])
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	s := func(x string) []byte { return []byte(x) }
	tests := []struct {
		name     string
		in       []byte
		complete bool
		offsets  []int64 // of the records
		consumed int64
	}{
		{"empty", nil, false, nil, 0},
		{"whitespace only", s(" \n\t\r\n"), true, nil, 0},
		{"BOM only", s("\uFEFF"), false, nil, 0},
		{"BOM", join(s("\uFEFF"), a, s("\n"), b, s("\n")), false, []int64{3, int64(3 + len(a) + 1)}, int64(3 + len(a) + len(b) + 2)},
		{"CRLF", join(a, s("\r\n"), b, s("\r\n")), false, []int64{0, int64(len(a) + 2)}, int64(len(a) + len(b) + 4)},
		{"blank lines", join(s("\n  \n"), a, s("\n\r\n\t\n"), b, s("\n\n")), false, []int64{4, int64(4 + len(a) + 5)}, int64(4 + len(a) + 5 + len(b) + 2)},
		{"leading and trailing spaces", join(s("  "), a, s(" \t\n")), false, []int64{2}, int64(len(a) + 5)},
		{"unterminated tail", join(a, s("\n"), b), false, []int64{0}, int64(len(a) + 1)},
		{"unterminated tail, complete", join(a, s("\n"), b), true, []int64{0, int64(len(a) + 1)}, int64(len(a) + len(b) + 1)},
		{"unterminated blank tail", join(a, s("\n  ")), false, []int64{0}, int64(len(a) + 1)},
		{"unterminated blank tail, complete", join(a, s("\n  ")), true, []int64{0}, int64(len(a) + 3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range readers(tc.in) {
				res := readAll(t, r, Options{Complete: tc.complete})
				var offs []int64
				for _, rec := range res.recs {
					offs = append(offs, rec.Offset)
				}
				if len(res.errs) > 0 || !reflect.DeepEqual(offs, tc.offsets) || res.consumed != tc.consumed {
					t.Errorf("offsets %v consumed %d errs %v; want %v %d", offs, res.consumed, res.errs, tc.offsets, tc.consumed)
				}
			}
		})
	}
}

// readers returns readers of b that deliver it whole, one byte at a time,
// and in halves, to shake out buffer boundary mistakes.
func readers(b []byte) []io.Reader {
	return []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b)), iotest.HalfReader(bytes.NewReader(b))}
}

func TestUnterminatedTailResume(t *testing.T) {
	data := readFile(t, samplesFile)
	cut := len(data) - 100 // inside the last line
	first := readAll(t, bytes.NewReader(data[:cut]), Options{})
	lastLine := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	if len(first.recs) != 31 || first.consumed != int64(lastLine) {
		t.Fatalf("growing blob: %d records, Consumed %d; want 31, %d", len(first.recs), first.consumed, lastLine)
	}
	// The blob grew: resume with the completed bytes.
	rest := readAll(t, bytes.NewReader(data[first.consumed:]), Options{BaseOffset: first.consumed, Format: first.format})
	if len(rest.recs) != 1 || rest.recs[0].Offset != int64(lastLine) || rest.consumed != int64(len(data)) {
		t.Fatalf("resumed: %d records (offset %v), Consumed %d", len(rest.recs), rest.recs, rest.consumed)
	}
	whole := readAll(t, bytes.NewReader(data), Options{})
	if !reflect.DeepEqual(append(first.recs, rest.recs...), whole.recs) {
		t.Error("records read in two parts differ from records read whole")
	}
}

// TestResumeAnywhere cuts the input at every byte: reading the first part
// as a growing blob, then resuming from Consumed over the whole, gives the
// records read in one go, each exactly once.
func TestResumeAnywhere(t *testing.T) {
	lines := sampleLines(t)
	var data []byte
	data = append(data, "\uFEFF"...)
	for i, l := range lines[:6] {
		data = append(data, l...)
		if i == 2 {
			data = append(data, "\r\n\n{\"bad\":1}\n"...)
		}
	}
	for _, format := range []string{"jsonl", "document"} {
		in := data
		if format == "document" {
			in = readFile(t, "testdata/legacy-document.json")
		}
		t.Run(format, func(t *testing.T) {
			whole := readAll(t, bytes.NewReader(in), Options{Blob: "b"})
			if len(whole.recs) == 0 {
				t.Fatal("no records")
			}
			for cut := 0; cut <= len(in); cut++ {
				first := readAll(t, bytes.NewReader(in[:cut]), Options{Blob: "b"})
				rest := readAll(t, bytes.NewReader(in[first.consumed:]), Options{Blob: "b", BaseOffset: first.consumed, Format: first.format})
				if got := append(first.recs, rest.recs...); !reflect.DeepEqual(got, whole.recs) {
					t.Fatalf("cut at %d (Consumed %d): %d+%d records, want %d", cut, first.consumed, len(first.recs), len(rest.recs), len(whole.recs))
				}
				if got := append(first.errs, rest.errs...); !reflect.DeepEqual(got, whole.errs) {
					t.Fatalf("cut at %d: errors %v, want %v", cut, got, whole.errs)
				}
				if rest.consumed != whole.consumed {
					t.Fatalf("cut at %d: final Consumed %d, want %d", cut, rest.consumed, whole.consumed)
				}
			}
		})
	}
}

func TestDocument(t *testing.T) {
	doc := readFile(t, "testdata/legacy-document.json")
	lines := sampleLines(t)
	for i, r := range readers(doc) {
		res := readAll(t, r, Options{Blob: "legacy", Complete: true})
		if res.format != FormatDocument || len(res.errs) > 0 || len(res.recs) != 3 || res.consumed != int64(len(doc)) {
			t.Fatalf("reader %d: format %v, %d records, errors %v, Consumed %d", i, res.format, len(res.recs), res.errs, res.consumed)
		}
		want := readAll(t, bytes.NewReader(bytes.Join(lines[:3], nil)), Options{Blob: "legacy"})
		for k := range res.recs {
			got, w := res.recs[k], want.recs[k]
			if doc[got.Offset] != '{' {
				t.Errorf("record %d: Offset %d is not at '{'", k, got.Offset)
			}
			// Same record, but for layout: offsets and raw text differ.
			got.Offset, w.Offset = 0, 0
			got.Properties, w.Properties = compact(t, got.Properties), compact(t, w.Properties)
			got.Identity.Claims, w.Identity.Claims = compact(t, got.Identity.Claims), compact(t, w.Identity.Claims)
			if k == 0 && !reflect.DeepEqual(got, w) {
				t.Errorf("record %d:\n got %+v\nwant %+v", k, got, w)
			}
			if got.Time != w.Time || got.Vault != w.Vault || got.Status != w.Status || got.ObjectName != w.ObjectName {
				t.Errorf("record %d differs from the JSON Lines one", k)
			}
		}
		if bytes.ContainsAny(AppendJSON(nil, &res.recs[0]), "\n") {
			t.Error("AppendJSON of a pretty-printed record holds a newline")
		}
	}

	compactDoc := []byte(`{"records":[` + string(bytes.TrimSpace(lines[0])) + `,` + string(bytes.TrimSpace(lines[1])) + `]}`)
	tests := []struct {
		name     string
		in       string
		complete bool
		recs     int
		errs     []string // reasons
		consumed int64
	}{
		{"compact", string(compactDoc), false, 2, nil, int64(len(compactDoc))},
		{"empty records", `{"records":[]}`, false, 0, nil, 14},
		{"truncated growing", string(compactDoc[:len(compactDoc)-20]), false, 1, nil, int64(12 + len(bytes.TrimSpace(lines[0])) + 1)},
		{"truncated complete", string(compactDoc[:len(compactDoc)-20]), true, 1, []string{"document: truncated"}, int64(len(compactDoc) - 20)},
		{"element not an object", `{"records":[1,"x",{"time":"2024-01-01T00:00:00Z"},null]}`, false, 1, []string{"not a JSON object", "not a JSON object", "not a JSON object"}, 56},
		{"element bad time", `{"records":[{"time":5},{"time":"2024-01-01T00:00:00Z"}]}`, false, 1, []string{"time: not a string"}, 56},
		{"element bad JSON", `{"records":[{"time":"2024-01-01T00:00:00Z",},{"time":"2024-01-01T00:00:00Z"}]}`, false, 1, []string{"invalid JSON at record byte 31: expected object key"}, 78},
		{"broken structure", `{"records":[{"time":"2024-01-01T00:00:00Z"} x {"time":"2024-01-01T00:00:00Z"}]}`, false, 1, []string{"document: unexpected 'x' in records array"}, 79},
		{"data after the end", `{"records":[]} {}`, false, 0, []string{"document: data after the end"}, 17},
		{"other keys around", `{"a":{"records":[1]},"records":[{"time":"2024-01-01T00:00:00Z"}],"b":"]"}`, false, 1, nil, 73},
		{"escaped key", `{"rec\u006frds":[{"time":"2024-01-01T00:00:00Z"}]}`, false, 1, nil, 50},
		{"trailing whitespace", `{"records":[]}` + " \n\n", false, 0, nil, 17},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range readers([]byte(tc.in)) {
				res := readAll(t, r, Options{Complete: tc.complete, Format: FormatDocument})
				var reasons []string
				for _, e := range res.errs {
					reasons = append(reasons, e.Reason)
				}
				if len(res.recs) != tc.recs || !reflect.DeepEqual(reasons, tc.errs) || res.consumed != tc.consumed {
					t.Errorf("%d records, errors %q, Consumed %d; want %d, %q, %d", len(res.recs), reasons, res.consumed, tc.recs, tc.errs, tc.consumed)
				}
			}
		})
	}
}

func compact(t testing.TB, raw []byte) []byte {
	t.Helper()
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return b.Bytes()
}

func TestDetect(t *testing.T) {
	tests := []struct {
		in       string
		complete bool
		want     Format
	}{
		{"", false, FormatUnknown},
		{"  \n ", true, FormatUnknown},
		{"{", false, FormatUnknown},
		{"{\"rec", false, FormatUnknown},
		{"{\"rec", true, FormatJSONLines},
		{"{\n", false, FormatDocument},
		{"\uFEFF {  \r\n", false, FormatDocument},
		{`{"records":[`, false, FormatDocument},
		{"{ \"records\" :\n [", false, FormatDocument},
		{`{"records":`, false, FormatUnknown},
		{`{"records":{}}`, false, FormatJSONLines},
		{`{"time":"x"}`, false, FormatJSONLines},
		{`{"t`, false, FormatJSONLines},
		{"x", false, FormatJSONLines},
		{"\n\n[", false, FormatJSONLines},
	}
	for _, tc := range tests {
		p := NewReader(strings.NewReader(tc.in), Options{Complete: tc.complete})
		for p.Next(&Record{}) != io.EOF {
		}
		if p.Format() != tc.want {
			t.Errorf("%q: Format %v, want %v", tc.in, p.Format(), tc.want)
		}
	}
}

func TestBadLines(t *testing.T) {
	data := readFile(t, "testdata/bad-lines.jsonl")
	var starts []int64
	for i := 0; i < len(data); {
		starts = append(starts, int64(i))
		i += bytes.IndexByte(data[i:], '\n') + 1
	}
	res := readAll(t, bytes.NewReader(data), Options{Blob: "bad"})
	type e struct {
		off    int64
		reason string
	}
	want := []e{
		{starts[1], "invalid JSON at record byte 1: invalid literal"},
		{starts[3], "not a JSON object"},
		{starts[4], "time: missing"},
		{starts[5], `time: cannot parse "yesterday"`},
		{starts[6], "time: null"},
		{starts[7], "invalid JSON at record byte 36: invalid character looking for value"},
	}
	var got []e
	for _, re := range res.errs {
		got = append(got, e{re.Offset, re.Reason})
		if re.Blob != "bad" {
			t.Errorf("RecordError.Blob = %q", re.Blob)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors\n got %v\nwant %v", got, want)
	}
	if len(res.recs) != 3 || res.recs[0].Offset != starts[0] || res.recs[1].Offset != starts[2] || res.recs[2].Offset != starts[8] {
		t.Errorf("records: %d", len(res.recs))
	}
	msg := (&RecordError{Blob: "x", Offset: 123, Reason: "time: missing"}).Error()
	if msg != `parse: bad record in blob "x" at byte 123: time: missing` {
		t.Errorf("Error() = %s", msg)
	}
}

func TestRejects(t *testing.T) {
	const good = `"time":"2024-01-01T00:00:00Z"`
	tests := []string{
		`{` + good + `,}`,
		`{` + good + `}x`,
		`{` + good + `}{}`,
		`{` + good + `,"a":[1,]}`,
		`{` + good + `,"a":01}`,
		`{` + good + `,"a":1.}`,
		`{` + good + `,"a":-}`,
		`{` + good + `,"a":tru}`,
		`{` + good + `,"a":"\x"}`,
		`{` + good + `,"a":"\u12"}`,
		"{" + good + ",\"a\":\"\t\"}",
		`{` + good + `,"a":{"b":1]}`,
		`{` + good + `,'a':1}`,
		`{` + good + ` "a":1}`,
		`{` + good + `,"a" 1}`,
		`{` + good + `,"a":[` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `]}`,
	}
	for _, in := range tests {
		if json.Valid([]byte(in)) {
			t.Fatalf("test case is valid JSON: %s", in)
		}
		res := readAll(t, strings.NewReader(in+"\n"), Options{})
		if len(res.recs) != 0 || len(res.errs) != 1 || res.errs[0].Offset != 0 {
			t.Errorf("%.60s: %d records, errors %v", in, len(res.recs), res.errs)
		}
	}
	deep := `{` + good + `,"a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`
	if res := readAll(t, strings.NewReader(deep), Options{Complete: true}); len(res.recs) != 1 || !json.Valid([]byte(deep)) {
		t.Errorf("nesting at the limit: %d records, errors %v", len(res.recs), res.errs)
	}
}

func TestTooLong(t *testing.T) {
	const max = 100
	short := `{"time":"2024-01-01T00:00:00Z"}`
	long := `{"time":"2024-01-01T00:00:00Z","x":"` + strings.Repeat("y", 200) + `"}`
	exact := `{"time":"2024-01-01T00:00:00Z","x":"` + strings.Repeat("y", max-len(short)-7) + `"}`
	if len(exact) != max {
		t.Fatalf("len(exact) = %d", len(exact))
	}
	tests := []struct {
		name     string
		in       string
		complete bool
		recs     int
		errs     []int64
		consumed int64
	}{
		{"long among short", short + "\n" + long + "\n" + short + "\n", false, 2, []int64{32}, int64(64 + len(long) + 1)},
		{"exactly max with CRLF", exact + "\r\n" + short + "\n", false, 2, nil, int64(max + 2 + 32)},
		{"long tail growing", short + "\n" + long, false, 1, nil, 32},
		{"long tail complete", short + "\n" + long, true, 1, []int64{32}, int64(32 + len(long))},
		{"document element", `{"records":[` + short + "," + long + "," + short + "]}", false, 2, []int64{int64(13 + len(short))}, int64(16 + 2*len(short) + len(long))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range readers([]byte(tc.in)) {
				res := readAll(t, r, Options{MaxRecordBytes: max, Complete: tc.complete})
				var offs []int64
				for _, e := range res.errs {
					offs = append(offs, e.Offset)
					if !strings.HasPrefix(e.Reason, "record longer than 100 bytes") {
						t.Errorf("reason %q", e.Reason)
					}
				}
				if len(res.recs) != tc.recs || !reflect.DeepEqual(offs, tc.errs) || res.consumed != tc.consumed {
					t.Errorf("%d records, errors at %v, Consumed %d; want %d, %v, %d", len(res.recs), offs, res.consumed, tc.recs, tc.errs, tc.consumed)
				}
			}
		})
	}
}

// TestBoundedMemory reads a 64 MiB line: it is skipped without the buffer
// growing past MaxRecordBytes plus the fixed read room.
func TestBoundedMemory(t *testing.T) {
	huge := io.MultiReader(strings.NewReader(`{"time":"`), &repeatReader{b: 'x', n: 64 << 20}, strings.NewReader("\"}\n{\"time\":\"2024-01-01T00:00:00Z\"}\n"))
	p := NewReader(huge, Options{MaxRecordBytes: 1 << 20})
	var rec Record
	var re *RecordError
	if err := p.Next(&rec); !errors.As(err, &re) || re.Offset != 0 {
		t.Fatalf("Next = %v, want a RecordError at 0", err)
	}
	if err := p.Next(&rec); err != nil || rec.Offset != 64<<20+12 {
		t.Fatalf("Next = %v, offset %d", err, rec.Offset)
	}
	if len(p.buf) > 1<<20+2+readRoom {
		t.Errorf("buffer grew to %d bytes", len(p.buf))
	}
}

type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = r.b
	}
	r.n -= n
	return n, nil
}

func TestReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	line := `{"time":"2024-01-01T00:00:00Z"}` + "\n"
	p := NewReader(io.MultiReader(strings.NewReader(line), iotest.ErrReader(boom)), Options{})
	var rec Record
	if err := p.Next(&rec); err != nil {
		t.Fatalf("first Next = %v", err)
	}
	for range 2 {
		if err := p.Next(&rec); err != boom {
			t.Fatalf("Next = %v, want the reader's error", err)
		}
	}
	if p.Consumed() != int64(len(line)) {
		t.Errorf("Consumed = %d", p.Consumed())
	}
	if err := NewReader(strings.NewReader(line), Options{BaseOffset: 5}).Next(&rec); err != ErrFormatRequired {
		t.Errorf("BaseOffset without Format: %v", err)
	}
	if err := NewReader(strings.NewReader(line), Options{BaseOffset: -1, Format: FormatJSONLines}).Next(&rec); err == nil || err == io.EOF {
		t.Errorf("negative BaseOffset: %v", err)
	}
}

func TestRecordUnchangedOnError(t *testing.T) {
	rec := Record{Vault: "keep"}
	p := NewReader(strings.NewReader(`{"time":"x","resourceId":"/VAULTS/OTHER"}`+"\n"), Options{})
	if err := p.Next(&rec); err == nil || rec.Vault != "keep" {
		t.Errorf("Next = %v, rec.Vault = %q", err, rec.Vault)
	}
}

func TestFormatString(t *testing.T) {
	for f, want := range map[Format]string{FormatUnknown: "unknown", FormatJSONLines: "jsonl", FormatDocument: "document", 7: "Format(7)"} {
		if f.String() != want {
			t.Errorf("%d: %q", int(f), f.String())
		}
	}
}
