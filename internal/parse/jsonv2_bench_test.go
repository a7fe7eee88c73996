//go:build goexperiment.jsonv2

package parse

import (
	"bufio"
	"bytes"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"testing"
)

// The same per-line work with encoding/json/v2, for choosing the JSON
// approach by measurement; it needs the experiment:
//
//	GOEXPERIMENT=jsonv2 go test -run '^$' -bench 'V2' -benchmem ./internal/parse/

// BenchmarkNaiveV2 is BenchmarkNaive with encoding/json/v2: each line into
// map[string]any and back.
func BenchmarkNaiveV2(b *testing.B) {
	data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s := bufio.NewScanner(bytes.NewReader(data))
		s.Buffer(make([]byte, 1<<20), 4<<20)
		for s.Scan() {
			var m map[string]any
			if err := jsonv2.Unmarshal(s.Bytes(), &m); err != nil {
				b.Fatal(err)
			}
			if _, err := jsonv2.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// v2Record is the typed decode a v2 implementation would use: the fields
// kvaudit reads, the nested objects kept as raw values.
type v2Record struct {
	Time              string         `json:"time"`
	ResourceID        string         `json:"resourceId"`
	OperationName     string         `json:"operationName"`
	OperationVersion  string         `json:"operationVersion"`
	Category          string         `json:"category"`
	ResultType        string         `json:"resultType"`
	ResultSignature   string         `json:"resultSignature"`
	ResultDescription string         `json:"resultDescription"`
	DurationMs        jsontext.Value `json:"durationMs"`
	CallerIPAddress   string         `json:"callerIpAddress"`
	CorrelationID     string         `json:"correlationId"`
	Identity          jsontext.Value `json:"identity"`
	Properties        jsontext.Value `json:"properties"`
}

// BenchmarkTypedV2 decodes each line into v2Record and encodes it again:
// a lower bound for a v2-based parser, which would also have to look into
// identity and properties and normalize.
func BenchmarkTypedV2(b *testing.B) {
	data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s := bufio.NewScanner(bytes.NewReader(data))
		s.Buffer(make([]byte, 1<<20), 4<<20)
		for s.Scan() {
			var r v2Record
			if err := jsonv2.Unmarshal(s.Bytes(), &r); err != nil {
				b.Fatal(err)
			}
			if _, err := jsonv2.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	}
}
