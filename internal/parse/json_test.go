package parse

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

var eventKeys = []string{"time", "vault", "subscriptionId", "resourceGroup", "resourceId", "operationName",
	"operationVersion", "category", "resultType", "resultSignature", "resultDescription", "durationMs",
	"callerIpAddress", "correlationId", "identity", "httpStatusCode", "status", "requestUri", "id",
	"objectName", "objectType", "clientInfo", "tlsVersion", "properties", "extra", "source"}

// topKeys returns the top-level keys of a JSON object, in order.
func topKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestAppendJSONZero(t *testing.T) {
	out := AppendJSON(nil, &Record{})
	want := `{"time":"0001-01-01T00:00:00.0000000Z","vault":"","subscriptionId":"","resourceGroup":"","resourceId":"","operationName":"","operationVersion":"","category":"","resultType":"","resultSignature":"","resultDescription":"","durationMs":null,"callerIpAddress":"","correlationId":"","identity":{"objectId":"","upn":"","appId":"","claims":null},"httpStatusCode":0,"status":0,"requestUri":"","id":"","objectName":"","objectType":"","clientInfo":"","tlsVersion":"","properties":null,"extra":null,"source":{"account":"","blob":"","offset":0}}`
	if string(out) != want {
		t.Errorf("zero record:\n got %s\nwant %s", out, want)
	}
	if !reflect.DeepEqual(topKeys(t, out), eventKeys) {
		t.Errorf("keys %v", topKeys(t, out))
	}
	// Appends, does not overwrite.
	if out := AppendJSON([]byte("x"), &Record{}); !bytes.HasPrefix(out, []byte(`x{"time"`)) {
		t.Errorf("AppendJSON does not append: %.20s", out)
	}
}

// eventJSON mirrors the output shape for decoding in tests.
type eventJSON struct {
	Time              string   `json:"time"`
	Vault             string   `json:"vault"`
	SubscriptionID    string   `json:"subscriptionId"`
	ResourceGroup     string   `json:"resourceGroup"`
	ResourceID        string   `json:"resourceId"`
	OperationName     string   `json:"operationName"`
	OperationVersion  string   `json:"operationVersion"`
	Category          string   `json:"category"`
	ResultType        string   `json:"resultType"`
	ResultSignature   string   `json:"resultSignature"`
	ResultDescription string   `json:"resultDescription"`
	DurationMs        *float64 `json:"durationMs"`
	CallerIPAddress   string   `json:"callerIpAddress"`
	CorrelationID     string   `json:"correlationId"`
	Identity          struct {
		ObjectID string          `json:"objectId"`
		UPN      string          `json:"upn"`
		AppID    string          `json:"appId"`
		Claims   json.RawMessage `json:"claims"`
	} `json:"identity"`
	HTTPStatusCode int             `json:"httpStatusCode"`
	Status         int             `json:"status"`
	RequestURI     string          `json:"requestUri"`
	ID             string          `json:"id"`
	ObjectName     string          `json:"objectName"`
	ObjectType     string          `json:"objectType"`
	ClientInfo     string          `json:"clientInfo"`
	TLSVersion     string          `json:"tlsVersion"`
	Properties     json.RawMessage `json:"properties"`
	Extra          json.RawMessage `json:"extra"`
	Source         struct {
		Account string `json:"account"`
		Blob    string `json:"blob"`
		Offset  int64  `json:"offset"`
	} `json:"source"`
}

// TestAppendJSONRoundTrip checks every sample's output against its Record
// through encoding/json.
func TestAppendJSONRoundTrip(t *testing.T) {
	res := readAll(t, bytes.NewReader(readFile(t, samplesFile)), Options{Blob: `we"ird\blob`, Account: "logsone"})
	var buf []byte
	for i, rec := range res.recs {
		buf = AppendJSON(buf[:0], &rec)
		var ev eventJSON
		if err := json.Unmarshal(buf, &ev); err != nil {
			t.Fatalf("record %d: %v\n%s", i, err, buf)
		}
		if !reflect.DeepEqual(topKeys(t, buf), eventKeys) {
			t.Errorf("record %d: keys %v", i, topKeys(t, buf))
		}
		back := Record{
			Vault: ev.Vault, SubscriptionID: ev.SubscriptionID, ResourceGroup: ev.ResourceGroup, ResourceID: ev.ResourceID,
			OperationName: ev.OperationName, OperationVersion: ev.OperationVersion, Category: ev.Category,
			ResultType: ev.ResultType, ResultSignature: ev.ResultSignature, ResultDescription: ev.ResultDescription,
			CallerIPAddress: ev.CallerIPAddress, CorrelationID: ev.CorrelationID,
			Identity:       Identity{ObjectID: ev.Identity.ObjectID, UPN: ev.Identity.UPN, AppID: ev.Identity.AppID, Claims: ev.Identity.Claims},
			HTTPStatusCode: ev.HTTPStatusCode, Status: ev.Status, RequestURI: ev.RequestURI, ID: ev.ID,
			ObjectName: ev.ObjectName, ObjectType: ev.ObjectType, ClientInfo: ev.ClientInfo, TLSVersion: ev.TLSVersion,
			Properties: ev.Properties, Blob: ev.Source.Blob, Account: ev.Source.Account, Offset: ev.Source.Offset,
		}
		back.Time, _ = time.Parse(time.RFC3339Nano, ev.Time)
		back.Time = back.Time.UTC()
		if ev.DurationMs != nil {
			back.DurationMs, back.HasDuration = *ev.DurationMs, true
		}
		if string(ev.Extra) != "null" {
			back.Extra = ev.Extra
		}
		if !reflect.DeepEqual(back, rec) {
			t.Errorf("record %d: round trip differs:\n got %+v\nwant %+v", i, back, rec)
		}
	}
}

func TestAppendJSONValues(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want string // a fragment of the output
	}{
		{"escapes", Record{OperationName: "a\"b\\c\n\r\t\x01\x7f</>&é\u2028"}, `"operationName":"a\"b\\c\n\r\t\u0001` + "\x7f</>&é" + `\u2028"`},
		{"invalid UTF-8", Record{Blob: "a\xffb\xc3"}, `"blob":"a\ufffdb\ufffd"`},
		{"duration", Record{DurationMs: 14.2187, HasDuration: true}, `"durationMs":14.2187,`},
		{"duration integer", Record{DurationMs: 575, HasDuration: true}, `"durationMs":575,`},
		{"duration tiny", Record{DurationMs: 1e-7, HasDuration: true}, `"durationMs":1e-7,`},
		{"duration NaN", Record{DurationMs: math.NaN(), HasDuration: true}, `"durationMs":null,`},
		{"duration Inf", Record{DurationMs: math.Inf(1), HasDuration: true}, `"durationMs":null,`},
		{"raw compacted", Record{Properties: json.RawMessage("{\n  \"a\" : [1, \"x y\"]\n}\n")}, `"properties":{"a":[1,"x y"]},`},
		{"raw string", Record{Identity: Identity{Claims: json.RawMessage(`"user"`)}}, `"claims":"user"}`},
		{"raw number", Record{Extra: json.RawMessage(`12`)}, `"extra":12,`},
		{"raw whitespace", Record{Extra: json.RawMessage(" \r\n")}, `"extra":null,`},
		{"raw invalid", Record{Properties: json.RawMessage(`{"a":`)}, `"properties":null,`},
		{"raw truncated", Record{Properties: json.RawMessage(`{"a":"abc…[truncated by kvaudit]`)}, `"properties":null,`},
		{"raw bad number", Record{Extra: json.RawMessage(`1.`)}, `"extra":null,`},
		{"raw two values", Record{Extra: json.RawMessage(`1 2`)}, `"extra":null,`},
		{"raw unterminated array", Record{Extra: json.RawMessage(`[0`)}, `"extra":null,`},
		{"raw unterminated object", Record{Extra: json.RawMessage(`{"a":1`)}, `"extra":null,`},
		{"raw number", Record{Extra: json.RawMessage(` -1.5e3 `)}, `"extra":-1.5e3,`},
		{"raw invalid UTF-8", Record{Extra: json.RawMessage("{\"k\xff\":\"\xed\xa0\x80\"}")}, `"extra":{"k` + "\uFFFD" + `":"` + "\uFFFD\uFFFD\uFFFD" + `"},`},
		{"raw CRLF, strings kept", Record{Extra: json.RawMessage("[\r\n \"a b\\\" c\" ,\t1\r\n]")}, `"extra":["a b\" c",1],`},
		{"negative offset", Record{Offset: -1, Status: 403}, `"status":403,`},
	}
	for _, tc := range tests {
		out := AppendJSON(nil, &tc.rec)
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %s does not contain %s", tc.name, out, tc.want)
		}
		if !json.Valid(out) {
			t.Errorf("%s: invalid JSON %s", tc.name, out)
		}
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	res := readAll(t, bytes.NewReader(readFile(t, samplesFile)), Options{})
	buf := make([]byte, 0, 1<<16)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range res.recs {
			buf = AppendJSON(buf[:0], &res.recs[i])
		}
	})
	if allocs != 0 {
		t.Errorf("AppendJSON allocates %v times per 32 records", allocs)
	}
}

func TestReaderAllocs(t *testing.T) {
	data := bytes.Repeat(readFile(t, samplesFile), 20)
	var rec Record
	allocs := testing.AllocsPerRun(10, func() {
		p := NewReader(bytes.NewReader(data), Options{})
		for p.Next(&rec) == nil {
		}
	})
	// Per record: at most two strings holding its new strings (one once
	// repeating values are known: here 32 records cycle). Per Reader: the
	// Reader, its buffer, and scratch space growing to size.
	if allocs > 2*640+100 {
		t.Errorf("%v allocations for 640 records", allocs)
	}
}

func TestFormatTimeAgainstTime(t *testing.T) {
	base := []time.Time{
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 999999900, time.UTC),
		{},
	}
	for _, b := range base {
		for _, d := range []time.Duration{0, time.Nanosecond, -time.Nanosecond, 37 * time.Hour, -1000 * time.Hour} {
			tm := b.Add(d)
			if got, want := FormatTime(tm), tm.UTC().Format(TimeLayout); got != want {
				t.Errorf("FormatTime(%v) = %s, want %s", tm, got, want)
			}
		}
	}
	// A sweep over four centuries, a day and some seconds at a time.
	for tm := time.Date(1890, 1, 1, 0, 0, 0, 0, time.UTC); tm.Year() < 2300; tm = tm.Add(24*time.Hour + 1234567891) {
		if got, want := FormatTime(tm), tm.Format(TimeLayout); got != want {
			t.Fatalf("FormatTime(%v) = %s, want %s", tm, got, want)
		}
	}
}
