package funchost_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost"
)

// hostBlobBody is a blob-trigger invocation as the host sends it: string
// values in Metadata encoded twice, Properties an object, Data first.
const hostBlobBody = `{"Data":{"blob":"eyJ0aW1lIjoiMjAyNi0wMy0wMVQxMDowMDowMC4wMDAwMDAwWiJ9Cg=="},` +
	`"Metadata":{"BlobTrigger":"\"insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1/y=2026/m=03/d=01/h=10/m=00/PT1H.json\"",` +
	`"Uri":"\"http://127.0.0.1:10000/devstoreaccount1/insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1/y=2026/m=03/d=01/h=10/m=00/PT1H.json\"",` +
	`"Properties":{"LastModified":"2026-03-01T10:59:12+00:00","CreatedOn":"2026-03-01T10:00:03.1234567+00:00","Metadata":{},"BlobType":"AppendBlob","ETag":"\"0x8DC1A2B3C4D5E6F\"","ContentType":"application/octet-stream","ContentLength":53,"AppendBlobCommittedBlockCount":1},` +
	`"Metadata":{},` +
	`"name":"\"resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1/y=2026/m=03/d=01/h=10/m=00/PT1H.json\"",` +
	`"sys":{"MethodName":"BlobTrigger","UtcNow":"2026-03-01T11:00:00.1234567Z","RandGuid":"9b2f2c8e-4b7e-4f7a-9a57-0c1f2b3c4d5e"}}}`

const blobName = "resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1/y=2026/m=03/d=01/h=10/m=00/PT1H.json"

const hostTimerBody = `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-03-01T10:55:00+00:00","Next":"2026-03-01T11:00:00+00:00","LastUpdated":"2026-03-01T10:55:00+00:00"},"IsPastDue":false}},` +
	`"Metadata":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-03-01T10:55:00+00:00","Next":"2026-03-01T11:00:00+00:00","LastUpdated":"2026-03-01T10:55:00+00:00"},"IsPastDue":false},` +
	`"sys":{"MethodName":"CatchUp","UtcNow":"2026-03-01T11:00:00.0012345Z","RandGuid":"1b2f2c8e-4b7e-4f7a-9a57-0c1f2b3c4d5e"}}}`

func TestReadInvocation(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		max       int64
		wantMeta  []string // Metadata keys
		wantData  map[string]int64
		wantErr   error
		wantNoEOF bool // the error must not be io.ErrUnexpectedEOF
	}{
		{name: "blob trigger", body: hostBlobBody,
			wantMeta: []string{"BlobTrigger", "Metadata", "Properties", "Uri", "name", "sys"},
			wantData: map[string]int64{"blob": 58}},
		{name: "timer", body: hostTimerBody,
			wantMeta: []string{"sys", "timer"},
			wantData: map[string]int64{"timer": 183}},
		{name: "metadata first", body: `{"Metadata":{"name":"\"a\""},"Data":{"blob":"x"}}`,
			wantMeta: []string{"name"}, wantData: map[string]int64{"blob": 3}},
		{name: "whitespace everywhere", body: " \r\n\t{ \"Data\" : { \"b\" : [ 1 , { } , [ ] ] } , \"Metadata\" : { } } \n",
			wantMeta: []string{}, wantData: map[string]int64{"b": 17}},
		{name: "empty object", body: `{}`},
		{name: "nulls", body: `{"Data":null,"Metadata":null}`},
		{name: "unknown keys skipped", body: `{"X":{"y":[1,2,"\u00e9"]},"Data":{},"Z":-1.5e+3}`, wantData: map[string]int64{}},
		{name: "escaped keys", body: `{"D\u0061ta":{"b\u006cob":"v"},"Meta\u0064ata":{"n\"":1}}`,
			wantMeta: []string{`n"`}, wantData: map[string]int64{"blob": 3}},
		{name: "last duplicate wins", body: `{"Data":{"a":1},"Metadata":{"x":1},"Data":{"b":22},"Metadata":{"y":2}}`,
			wantMeta: []string{"y"}, wantData: map[string]int64{"b": 2}},
		{name: "bad data then good data", body: `{"Data":5,"Data":{"b":1}}`, wantData: map[string]int64{"b": 1}},
		{name: "number forms", body: `{"Data":{"a":0,"b":-0.5,"c":1E9,"d":12.50e-3,"e":[true,false,null]}}`,
			wantData: map[string]int64{"a": 1, "b": 4, "c": 3, "d": 8, "e": 17}},

		{name: "empty body", body: "", wantErr: funchost.ErrMalformed},
		{name: "not an object", body: `[]`, wantErr: funchost.ErrMalformed},
		{name: "null top level", body: `null`, wantErr: funchost.ErrMalformed},
		{name: "data not an object", body: `{"Data":"x"}`, wantErr: funchost.ErrMalformed},
		{name: "good data then bad data", body: `{"Data":{},"Data":[1]}`, wantErr: funchost.ErrMalformed},
		{name: "metadata not an object", body: `{"Metadata":"x"}`, wantErr: funchost.ErrMalformed},
		{name: "trailing data", body: `{} {}`, wantErr: funchost.ErrMalformed, wantNoEOF: true},
		{name: "truncated in data", body: `{"Data":{"blob":"abc`, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated after value", body: `{"Data":{"blob":1`, wantErr: io.ErrUnexpectedEOF},
		{name: "control char in string", body: "{\"Data\":{\"blob\":\"a\nb\"}}", wantErr: funchost.ErrMalformed, wantNoEOF: true},
		{name: "bad escape", body: `{"Data":{"blob":"\x"}}`, wantErr: funchost.ErrMalformed},
		{name: "bad unicode escape", body: `{"Data":{"blob":"\u12g4"}}`, wantErr: funchost.ErrMalformed},
		{name: "leading zero", body: `{"Data":{"a":01}}`, wantErr: funchost.ErrMalformed},
		{name: "bare minus", body: `{"Data":{"a":-}}`, wantErr: funchost.ErrMalformed},
		{name: "missing fraction", body: `{"Data":{"a":1.}}`, wantErr: funchost.ErrMalformed},
		{name: "missing exponent", body: `{"Data":{"a":1e+}}`, wantErr: funchost.ErrMalformed},
		{name: "bad literal", body: `{"Data":{"a":nul}}`, wantErr: funchost.ErrMalformed},
		{name: "trailing comma", body: `{"Data":{"a":[1,]}}`, wantErr: funchost.ErrMalformed},
		{name: "mismatched close", body: `{"Data":{"a":[1}}}`, wantErr: funchost.ErrMalformed},
		{name: "unquoted key", body: `{Data:{}}`, wantErr: funchost.ErrMalformed},
		{name: "metadata over limit", body: `{"Metadata":{"name":"0123456789"}}`, max: 20, wantErr: funchost.ErrTooLarge},
		{name: "metadata at limit", body: `{"Metadata":{"name":"0123456789"}}`, max: 10 + 21, wantMeta: []string{"name"}},
		{name: "data keys count", body: `{"Data":{"aaaaaaaaaa":1,"bbbbbbbbbb":2}}`, max: 6 + 12 + 11, wantErr: funchost.ErrTooLarge},
		{name: "data values do not count", body: `{"Data":{"b":"` + strings.Repeat("A", 1000) + `"}}`, max: 10,
			wantData: map[string]int64{"b": 1002}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]io.Reader{
				"whole":    strings.NewReader(tt.body),
				"one byte": iotest.OneByteReader(strings.NewReader(tt.body)),
				"half":     iotest.HalfReader(strings.NewReader(tt.body)),
				"data+err": iotest.DataErrReader(strings.NewReader(tt.body)),
			}
			for rname, r := range readers {
				inv, err := funchost.ReadInvocation(r, tt.max)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("%s: err = %v, want %v", rname, err, tt.wantErr)
					}
					if tt.wantErr == io.ErrUnexpectedEOF && !errors.Is(err, funchost.ErrMalformed) {
						t.Errorf("%s: err = %v, want it to wrap ErrMalformed too", rname, err)
					}
					if tt.wantNoEOF && errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("%s: err = %v, should not claim an unexpected EOF", rname, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", rname, err)
				}
				if tt.wantMeta != nil {
					var keys []string
					for k := range inv.Metadata {
						keys = append(keys, k)
					}
					if !sameSet(keys, tt.wantMeta) {
						t.Errorf("%s: Metadata keys = %q, want %q", rname, keys, tt.wantMeta)
					}
				} else if inv.Metadata != nil {
					t.Errorf("%s: Metadata = %v, want nil", rname, inv.Metadata)
				}
				if !reflect.DeepEqual(inv.DataBytes, tt.wantData) {
					t.Errorf("%s: DataBytes = %v, want %v", rname, inv.DataBytes, tt.wantData)
				}
				// The agreement the fuzz target checks, on every table case.
				checkAgainstReference(t, []byte(tt.body), inv)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, s := range a {
		m[s] = true
	}
	for _, s := range b {
		if !m[s] {
			return false
		}
	}
	return true
}

func TestReadInvocationReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(`{"Data":{"blob":"AAAA`), iotest.ErrReader(boom))
	_, err := funchost.ReadInvocation(r, 0)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap the reader's error", err)
	}
	if errors.Is(err, funchost.ErrMalformed) {
		t.Errorf("err = %v: a read failure is not a malformed body", err)
	}
}

// TestReadInvocationDepth checks the nesting limit matches encoding/json's,
// wherever the nesting happens.
func TestReadInvocationDepth(t *testing.T) {
	for _, where := range []string{"Data", "Metadata", "Other"} {
		for _, depth := range []int{9998, 9999, 10000} {
			inner := strings.Repeat("[", depth) + strings.Repeat("]", depth)
			var body string
			if where == "Other" {
				body = `{"Other":` + inner + `}`
			} else {
				body = `{"` + where + `":{"k":` + inner + `}}`
			}
			_, err := funchost.ReadInvocation(strings.NewReader(body), int64(len(body)))
			if valid := json.Valid([]byte(body)); valid != (err == nil) {
				t.Errorf("%s depth %d: json.Valid = %v, ReadInvocation err = %v", where, depth, valid, err)
			}
		}
	}
}

func TestString(t *testing.T) {
	inv := &funchost.Invocation{Metadata: map[string]json.RawMessage{
		"twice":     json.RawMessage(`"\"resourceId=/SUBSCRIPTIONS/X/PT1H.json\""`),
		"once":      json.RawMessage(`"resourceId=/SUBSCRIPTIONS/X/PT1H.json"`),
		"escapes":   json.RawMessage(`"\"a\\\"b\\\\c\\u00e9\""`),
		"quoteonly": json.RawMessage(`"\""`),
		"number":    json.RawMessage(`42`),
		"object":    json.RawMessage(`{}`),
		"null":      json.RawMessage(`null`),
	}}
	tests := []struct {
		key  string
		want string
		ok   bool
	}{
		{"twice", "resourceId=/SUBSCRIPTIONS/X/PT1H.json", true},
		{"once", "resourceId=/SUBSCRIPTIONS/X/PT1H.json", true},
		{"escapes", `a"b\cé`, true},
		{"quoteonly", `"`, true},
		{"number", "", false},
		{"object", "", false},
		{"null", "", false},
		{"absent", "", false},
	}
	for _, tt := range tests {
		got, ok := inv.String(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("String(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBlob(t *testing.T) {
	full := funchost.BlobTrigger{
		Name:          blobName,
		URI:           "http://127.0.0.1:10000/devstoreaccount1/insights-logs-auditevent/" + blobName,
		ETag:          `"0x8DC1A2B3C4D5E6F"`,
		BlobType:      "AppendBlob",
		ContentLength: 53,
		LastModified:  time.Date(2026, 3, 1, 10, 59, 12, 0, time.UTC),
		CreatedOn:     time.Date(2026, 3, 1, 10, 0, 3, 123456700, time.UTC),
	}
	tests := []struct {
		name    string
		meta    string
		want    funchost.BlobTrigger
		wantErr error
	}{
		{name: "host body", meta: "", want: full},
		{name: "properties as a string, once", meta: `{"name":"\"n\"","Properties":"{\"ETag\":\"\\\"0x1\\\"\",\"BlobType\":2,\"ContentLength\":\"7\",\"LastModified\":\"2026-03-01T10:00:00Z\"}"}`,
			want: funchost.BlobTrigger{Name: "n", ETag: `"0x1"`, BlobType: "AppendBlob", ContentLength: 7, LastModified: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}},
		{name: "properties as a string, twice", meta: `{"name":"n","Properties":"\"{\\\"ETag\\\":\\\"\\\\\\\"0x1\\\\\\\"\\\",\\\"BlobType\\\":\\\"Block\\\"}\""}`,
			want: funchost.BlobTrigger{Name: "n", ETag: `"0x1"`, BlobType: "BlockBlob"}},
		{name: "etag encoded twice", meta: `{"name":"n","Properties":{"etag":"\"\\\"0x2\\\"\"","lastModified":"3/1/2026 10:00:00 AM +01:00"}}`,
			want: funchost.BlobTrigger{Name: "n", ETag: `"0x2"`, LastModified: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}},
		{name: "name from BlobTrigger", meta: `{"BlobTrigger":"\"insights-logs-auditevent/a/b.json\""}`,
			want: funchost.BlobTrigger{Name: "a/b.json"}},
		{name: "unreadable properties", meta: `{"name":"\"n\"","Properties":[1]}`, want: funchost.BlobTrigger{Name: "n"}},
		{name: "no name", meta: `{"Uri":"\"x\""}`, wantErr: funchost.ErrNoBlobName},
		{name: "timer", meta: `{"timer":{}}`, wantErr: funchost.ErrNoBlobName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := hostBlobBody
			if tt.meta != "" {
				body = `{"Data":{},"Metadata":` + tt.meta + `}`
			}
			inv, err := funchost.ReadInvocation(strings.NewReader(body), 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := inv.Blob()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Blob() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// checkAgainstReference asserts that inv is what encoding/json makes of a
// body it accepts.
func checkAgainstReference(t *testing.T, body []byte, inv *funchost.Invocation) {
	t.Helper()
	meta, data, err := reference(body)
	if err != nil {
		t.Fatalf("ReadInvocation accepted a body the reference rejects (%v): %q", err, body)
	}
	if !reflect.DeepEqual(inv.Metadata, meta) {
		t.Fatalf("Metadata = %q, reference %q; body %q", inv.Metadata, meta, body)
	}
	if !reflect.DeepEqual(inv.DataBytes, data) {
		t.Fatalf("DataBytes = %v, reference %v; body %q", inv.DataBytes, data, body)
	}
}

// reference is ReadInvocation written with encoding/json, holding
// everything: the contract the streaming reader must agree with.
func reference(body []byte) (map[string]json.RawMessage, map[string]int64, error) {
	if !json.Valid(body) {
		return nil, nil, errors.New("invalid JSON")
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); t[0] != '{' {
		return nil, nil, errors.New("not an object")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, err
	}
	var sizes map[string]int64
	if raw, ok := top["Data"]; ok {
		var data map[string]json.RawMessage
		if err := json.Unmarshal(raw, &data); err != nil {
			return nil, nil, err
		}
		if data != nil {
			sizes = make(map[string]int64, len(data))
			for k, v := range data {
				sizes[k] = int64(len(v))
			}
		}
	}
	var meta map[string]json.RawMessage
	if raw, ok := top["Metadata"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, nil, err
		}
	}
	return meta, sizes, nil
}
