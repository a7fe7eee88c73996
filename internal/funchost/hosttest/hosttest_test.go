package hosttest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
)

const auditName = "resourceId=/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1/y=2026/m=03/d=01/h=10/m=00/PT1H.json"

// allBytes holds every byte value, valid and invalid UTF-8, and a few
// multi-byte characters, so that every escape of both layers is exercised.
func allBytes() []byte {
	var b bytes.Buffer
	for c := range 256 {
		b.WriteByte(byte(c))
	}
	b.WriteString(`{"time":"2026-03-01T10:00:00Z","a":"b\"c\\d"}` + "\n" + "é€😀\u2028</script>")
	return b.Bytes()
}

func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, n)
	for i := range b {
		if rng.IntN(4) == 0 {
			b[i] = "\"\\{}\n\x00"[rng.IntN(6)]
		} else {
			b[i] = byte(rng.IntN(256))
		}
	}
	return b
}

// wireBody is a blob-trigger body decoded with encoding/json, holding all.
type wireBody struct {
	Data     map[string]json.RawMessage
	Metadata map[string]json.RawMessage
}

// TestBlobRoundTrip sends what NewBlobRequest builds through encoding/json
// (decoding the content, once or twice) and through funchost.ReadInvocation,
// and checks both see what went in.
func TestBlobRoundTrip(t *testing.T) {
	modified := time.Date(2026, 3, 1, 10, 59, 12, 123456700, time.UTC)
	names := map[string]string{
		"audit":     auditName,
		"quotes":    `a"b/"c".json`,
		"backslash": `a\b\\c\"/d`,
		"unicode":   "vaults/kv-é€😀/\u2028/PT1H.json",
		"escapes":   "x\\u0041\\n\"\\\"",
	}
	contents := map[string][]byte{
		"empty":     {},
		"all bytes": allBytes(),
		"256 KiB":   randomBytes(256 << 10), // several pipe writes and bufio flushes
	}
	for nname, name := range names {
		for cname, content := range contents {
			for _, binary := range []bool{false, true} {
				for _, metadataFirst := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/%s/binary=%v/metadataFirst=%v", nname, cname, binary, metadataFirst), func(t *testing.T) {
						if !binary {
							// In string mode the host passes a .NET string:
							// valid UTF-8 by construction.
							content = []byte(strings.ToValidUTF8(string(content), "\uFFFD"))
						}
						inv := hosttest.BlobInvocation{
							Name:          name,
							Content:       bytes.NewReader(content),
							Binary:        binary,
							ContentLength: int64(len(content)),
							ETag:          `"0x8DC1A2B3C4D5E6F"`,
							LastModified:  modified,
							MetadataFirst: metadataFirst,
						}
						body := readBody(t, inv)

						var wb wireBody
						if err := json.Unmarshal(body, &wb); err != nil {
							t.Fatalf("body is not JSON: %v", err)
						}
						got := decodeContent(t, wb.Data["blob"], binary)
						if !bytes.Equal(got, content) {
							t.Errorf("decoded content differs from the input (%d bytes, want %d)", len(got), len(content))
						}
						var once string
						if err := json.Unmarshal(wb.Metadata["name"], &once); err != nil {
							t.Fatal(err)
						}
						if want := string(mustMarshal(name)); once != want {
							t.Errorf("name decoded once = %q, want the name encoded once %q", once, want)
						}

						parsed, err := funchost.ReadInvocation(bytes.NewReader(body), 0)
						if err != nil {
							t.Fatal(err)
						}
						if got, want := parsed.DataBytes["blob"], int64(len(wb.Data["blob"])); got != want {
							t.Errorf("DataBytes[blob] = %d, want %d", got, want)
						}
						blob, err := parsed.Blob()
						if err != nil {
							t.Fatal(err)
						}
						want := funchost.BlobTrigger{
							Name:          name,
							URI:           blob.URI,
							ETag:          `"0x8DC1A2B3C4D5E6F"`,
							BlobType:      "AppendBlob",
							ContentLength: int64(len(content)),
							LastModified:  modified,
							CreatedOn:     modified,
						}
						if blob != want {
							t.Errorf("Blob() =\n%+v\nwant\n%+v", blob, want)
						}
						if !strings.HasPrefix(blob.URI, hosttest.DefaultAccountURL+"/insights-logs-auditevent/") {
							t.Errorf("URI = %q", blob.URI)
						}
						if bt, _ := parsed.String("BlobTrigger"); bt != "insights-logs-auditevent/"+name {
							t.Errorf("BlobTrigger = %q", bt)
						}
						if m, _ := parsed.String("sys"); m != "" {
							t.Errorf("sys read as a string: %q", m)
						}
					})
				}
			}
		}
	}
}

// TestWireShape pins the host's quirks as they appear on the wire.
func TestWireShape(t *testing.T) {
	body := string(readBody(t, hosttest.BlobInvocation{
		Name:    `vaults/a"b`,
		Content: strings.NewReader("{\"k\":\"v\\\"\"}\n"),
		ETag:    "0x8DC1",
	}))
	for _, want := range []string{
		`{"Data":{"blob":"\"{\\\"k\\\":\\\"v\\\\\\\"\\\"}\\n\""},"Metadata":{`,
		`"name":"\"vaults/a\\\"b\""`,
		`"BlobTrigger":"\"insights-logs-auditevent/vaults/a\\\"b\""`,
		`"ETag":"\"0x8DC1\""`,
		`"BlobType":"AppendBlob"`,
		`"Metadata":{}`,
		`"sys":{"MethodName":"BlobTrigger","UtcNow":"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s\nbody: %s", want, body)
		}
	}
}

func TestBlobRequestHeaders(t *testing.T) {
	req, err := hosttest.NewBlobRequest(context.Background(), "http://127.0.0.1:7071/", hosttest.BlobInvocation{Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer req.Body.Close()
	if req.Method != http.MethodPost || req.URL.String() != "http://127.0.0.1:7071/BlobTrigger" {
		t.Errorf("request = %s %s", req.Method, req.URL)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := req.Header.Get(hosttest.HeaderInvocationID); !uuid.MatchString(id) {
		t.Errorf("invocation id = %q, want a UUID v4", id)
	}
	if v := req.Header.Get(hosttest.HeaderHostVersion); v != hosttest.HostVersion {
		t.Errorf("host version = %q", v)
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if _, err := hosttest.NewBlobRequest(context.Background(), "http://x", hosttest.BlobInvocation{}); err == nil {
		t.Error("NewBlobRequest accepted an empty name")
	}
}

func TestTimerRequest(t *testing.T) {
	last := time.Date(2026, 3, 1, 10, 55, 0, 0, time.UTC)
	req, err := hosttest.NewTimerRequest(context.Background(), "http://h", hosttest.TimerInvocation{
		IsPastDue: true, Last: last, Next: last.Add(5 * time.Minute), InvocationID: "id-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.Path != "/CatchUp" || req.Header.Get(hosttest.HeaderInvocationID) != "id-1" {
		t.Errorf("request = %s, id %q", req.URL, req.Header.Get(hosttest.HeaderInvocationID))
	}
	body, _ := io.ReadAll(req.Body)
	var got struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-03-01T10:55:00+00:00","Next":"2026-03-01T11:00:00+00:00","LastUpdated":"2026-03-01T10:55:00+00:00"},"IsPastDue":true}`
	if string(got.Data["timer"]) != want || string(got.Metadata["timer"]) != want {
		t.Errorf("timer = %s / %s\nwant %s", got.Data["timer"], got.Metadata["timer"], want)
	}
	inv, err := funchost.ReadInvocation(bytes.NewReader(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Blob(); !errors.Is(err, funchost.ErrNoBlobName) {
		t.Errorf("Blob() on a timer invocation: err = %v", err)
	}
}

// TestDo runs handlers against Do: a handler answering through
// funchost.WriteResponse passes; each way of breaking the host's shape is
// named in the error.
func TestDo(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  int
		wantErr string
	}{
		{name: "ok", status: 200, handler: func(w http.ResponseWriter, r *http.Request) {
			inv, err := funchost.ReadInvocation(r.Body, 0)
			if err != nil {
				funchost.WriteResponse(w, 400, funchost.Response{Logs: []string{err.Error()}})
				return
			}
			b, _ := inv.Blob()
			funchost.WriteResponse(w, 200, funchost.Response{Logs: []string{"read " + b.Name}, ReturnValue: 1})
		}},
		{name: "500", status: 500, wantErr: "replied 500", handler: func(w http.ResponseWriter, r *http.Request) {
			funchost.WriteResponse(w, 500, funchost.Response{})
		}},
		{name: "text", status: 200, wantErr: `Content-Type is "text/plain`, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, `{"Outputs":{},"Logs":[],"ReturnValue":null}`)
		}},
		{name: "null outputs", status: 200, wantErr: "Outputs is null, want an object", handler: jsonHandler(`{"Outputs":null,"Logs":[],"ReturnValue":null}`)},
		{name: "missing logs", status: 200, wantErr: "Logs is missing", handler: jsonHandler(`{"Outputs":{},"ReturnValue":null}`)},
		{name: "logs not strings", status: 200, wantErr: "Logs is [1], want an array of strings", handler: jsonHandler(`{"Outputs":{},"Logs":[1],"ReturnValue":null}`)},
		{name: "missing return", status: 200, wantErr: "ReturnValue is missing", handler: jsonHandler(`{"Outputs":{},"Logs":[]}`)},
		{name: "not json", status: 200, wantErr: "not a JSON object", handler: jsonHandler(`ok`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			req, err := hosttest.NewBlobRequest(context.Background(), srv.URL, hosttest.BlobInvocation{
				Name: auditName, Content: strings.NewReader("{}\n"),
			})
			if err != nil {
				t.Fatal(err)
			}
			status, resp, err := hosttest.Do(srv.Client(), req)
			if status != tt.status {
				t.Errorf("status = %d, want %d", status, tt.status)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Logs) != 1 || resp.Logs[0] != "read "+auditName || resp.ReturnValue != json.Number("1") || resp.Outputs == nil {
					t.Errorf("resp = %+v", resp)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantErr)
			}
		})
	}
}

func jsonHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, body)
	}
}

// TestBlobRequestStreams sends a 256 MiB blob (32 MiB under the race
// detector: still twice the budget) through the pipe into
// funchost.ReadInvocation and checks neither side holds it.
func TestBlobRequestStreams(t *testing.T) {
	size := 256 << 20
	if raceEnabled {
		size = 32 << 20
	}
	for _, binary := range []bool{true, false} {
		t.Run(fmt.Sprintf("binary=%v", binary), func(t *testing.T) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base, peak := ms.HeapInuse, ms.HeapInuse
			content := &patternReader{n: int64(size), every: int64(size) / 16, probe: func() {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}}
			req, err := hosttest.NewBlobRequest(context.Background(), "http://h", hosttest.BlobInvocation{
				Name: auditName, Content: content, Binary: binary, ContentLength: int64(size),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer req.Body.Close()
			inv, err := funchost.ReadInvocation(req.Body, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(2 + base64.StdEncoding.EncodedLen(size))
			if !binary {
				// Each quote of the content is \\\" on the wire, three bytes more.
				full, rem := size/len(pattern), size%len(pattern)
				quotes := full*strings.Count(pattern, `"`) + strings.Count(pattern[:rem], `"`)
				want = int64(6 + size + 3*quotes)
			}
			if got := inv.DataBytes["blob"]; got != want {
				t.Errorf("DataBytes[blob] = %d, want %d", got, want)
			}
			growth := float64(int64(peak)-int64(base)) / (1 << 20)
			t.Logf("HeapInuse growth %.2f MiB over a %d MiB blob", growth, size>>20)
			if growth > 16 {
				t.Errorf("HeapInuse grew by %.1f MiB; want under 16 MiB", growth)
			}
		})
	}
}

// pattern is a line of JSON text with quotes (three more bytes each when
// encoded twice) and no other character that needs escaping.
const pattern = `{"time":"2026-03-01T10:00:00.0000000Z","operationName":"SecretGet","resultSignature":"OK"}          `

// patternReader yields n bytes of pattern, calling probe every `every` bytes.
type patternReader struct {
	n, off, every, since int64
	probe                func()
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off == r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		p[i] = pattern[(r.off+int64(i))%int64(len(pattern))]
	}
	r.off += int64(len(p))
	if r.since += int64(len(p)); r.since >= r.every {
		r.since = 0
		r.probe()
	}
	return len(p), nil
}

func TestBlobRequestContentError(t *testing.T) {
	boom := errors.New("boom")
	req, err := hosttest.NewBlobRequest(context.Background(), "http://h", hosttest.BlobInvocation{
		Name: "n", Content: io.MultiReader(strings.NewReader("abc"), iotestErr{boom}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(req.Body); !errors.Is(err, boom) {
		t.Errorf("reading the body: err = %v, want the content's error", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestBlobRequestCancel checks that ctx ends the body writer when the body
// is never read to its end.
func TestBlobRequestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	endless := &patternReader{n: 1 << 62, every: 1 << 62}
	req, err := hosttest.NewBlobRequest(ctx, "http://h", hosttest.BlobInvocation{Name: "n", Content: endless})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(req.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, req.Body); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("body still flowing 10 s after cancel")
	}
}

func readBody(t *testing.T, inv hosttest.BlobInvocation) []byte {
	t.Helper()
	req, err := hosttest.NewBlobRequest(context.Background(), "http://h", inv)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Body.Close()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// decodeContent undoes the host's encoding of Data: base64 after one JSON
// decoding, or two JSON decodings.
func decodeContent(t *testing.T, raw json.RawMessage, binary bool) []byte {
	t.Helper()
	var once string
	if err := json.Unmarshal(raw, &once); err != nil {
		t.Fatalf("Data value is not a JSON string: %v", err)
	}
	if binary {
		b, err := base64.StdEncoding.DecodeString(once)
		if err != nil {
			t.Fatalf("content is not base64: %v", err)
		}
		return b
	}
	var twice string
	if err := json.Unmarshal([]byte(once), &twice); err != nil {
		t.Fatalf("content decoded once is not a JSON string (%v): %.80q", err, once)
	}
	return []byte(twice)
}

func mustMarshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
