// Package hosttest plays the Functions host in tests: it builds the host's
// exact requests and reads a handler's replies as the host would.
//
// It is a normal package, not a _test file, so that the dev tool that plays
// the host in `make run` can use it too; it does not import "testing".
//
// The requests follow the host's wire format, quirks included: every string
// value in Metadata is JSON-encoded twice ("name" shows on the wire as
// "\"resourceId=…\""), and a blob's content travels in Data, as base64 or
// as text encoded twice. Content is streamed through an io.Pipe, so a test
// can send a body of any size without holding it.
package hosttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost"
)

// HostVersion is the X-Azure-Functions-HostVersion the requests carry.
const HostVersion = "4.1040.300.25317"

// Defaults applied to zero fields.
const (
	DefaultBlobFunction  = "BlobTrigger"
	DefaultBlobBinding   = "blob"
	DefaultContainer     = "insights-logs-auditevent"
	DefaultAccountURL    = "http://127.0.0.1:10000/devstoreaccount1"
	DefaultBlobType      = "AppendBlob"
	DefaultTimerFunction = "CatchUp"
	DefaultTimerBinding  = "timer"
)

// Header names the host sets on every invocation.
const (
	HeaderInvocationID = "X-Azure-Functions-InvocationId"
	HeaderHostVersion  = "X-Azure-Functions-HostVersion"
)

// maxReply bounds the reply body Do reads: a custom handler's reply to a
// trigger is a few log lines.
const maxReply = 16 << 20

// BlobInvocation describes a blob-trigger invocation. Zero fields take the
// defaults documented on each.
type BlobInvocation struct {
	Function   string // default "BlobTrigger"
	Binding    string // Data key, default "blob"
	Name       string // blob path inside the container, e.g. "resourceId=/SUBSCRIPTIONS/…/PT1H.json"
	Container  string // default "insights-logs-auditevent" (used for Uri and BlobTrigger)
	AccountURL string // default "http://127.0.0.1:10000/devstoreaccount1" (used for Uri)

	// Content is the blob's content as the host would pass it; streamed,
	// never held. Nil means an empty blob. Its bytes pass through unchanged
	// in string mode (the host, decoding UTF-8, would turn invalid bytes into
	// U+FFFD).
	Content io.Reader
	// Binary selects "dataType": "binary": base64 content; otherwise the
	// content is a string encoded twice.
	Binary bool

	// ContentLength is reported in Properties as given: hosttest does not
	// measure Content.
	ContentLength int64
	ETag          string    // with or without quotes; default a random "0x8DC…"
	BlobType      string    // default "AppendBlob"
	LastModified  time.Time // default now
	CreatedOn     time.Time // default LastModified

	InvocationID string // default: a random UUID v4

	// MetadataFirst puts Metadata before Data in the body. The host writes
	// Data first, which is the harder case for a streaming reader; the
	// order is not guaranteed, so handlers must accept both.
	MetadataFirst bool
}

// NewBlobRequest builds the host's POST <handlerURL>/<Function> for a
// blob-trigger invocation. The body is produced lazily through an io.Pipe
// as it is read, with chunked transfer encoding (no Content-Length).
//
// A goroutine writes the body; it ends when the body has been read to its
// end, when the body is closed, or when ctx is done. A caller that passes
// the request straight to a handler's ServeHTTP, rather than through an
// http.Client (which closes it), must close req.Body afterwards. An error
// reading Content fails the body's reader with that error.
func NewBlobRequest(ctx context.Context, handlerURL string, inv BlobInvocation) (*http.Request, error) {
	if inv.Name == "" {
		return nil, errors.New("hosttest: BlobInvocation.Name is empty")
	}
	inv.Function = or(inv.Function, DefaultBlobFunction)
	inv.Binding = or(inv.Binding, DefaultBlobBinding)
	inv.Container = or(inv.Container, DefaultContainer)
	inv.AccountURL = strings.TrimSuffix(or(inv.AccountURL, DefaultAccountURL), "/")
	inv.BlobType = or(inv.BlobType, DefaultBlobType)
	if inv.ETag == "" {
		inv.ETag = `"0x8DC` + strings.ToUpper(randomHex(6))[:11] + `"`
	} else if !strings.HasPrefix(inv.ETag, `"`) {
		inv.ETag = `"` + inv.ETag + `"` // Azure's ETags carry their quotes
	}
	if inv.LastModified.IsZero() {
		inv.LastModified = time.Now().UTC().Truncate(time.Second)
	}
	if inv.CreatedOn.IsZero() {
		inv.CreatedOn = inv.LastModified
	}
	inv.InvocationID = or(inv.InvocationID, newUUID())

	meta := blobMetadata(inv)
	content := inv.Content
	if content == nil {
		content = strings.NewReader("")
	}

	pr, pw := io.Pipe()
	req, err := newRequest(ctx, handlerURL, inv.Function, inv.InvocationID, pr)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1 // unknown: the body is generated as it is read

	// When ctx ends first, closing the writing side both unblocks the writer
	// and gives the reader ctx's error; the first close is the one that
	// counts.
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(context.Cause(ctx)) })
	go func() {
		defer stop()
		bw := bufio.NewWriterSize(pw, 64<<10)
		err := writeBlobBody(bw, inv, meta, content)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err) // nil: the reader sees io.EOF
	}()
	return req, nil
}

func writeBlobBody(w *bufio.Writer, inv BlobInvocation, meta []byte, content io.Reader) error {
	w.WriteString("{")
	if inv.MetadataFirst {
		w.WriteString(`"Metadata":`)
		w.Write(meta)
		w.WriteString(",")
	}
	w.WriteString(`"Data":{`)
	w.Write(encode(inv.Binding))
	w.WriteString(":")
	if inv.Binary {
		w.WriteString(`"`)
		enc := base64.NewEncoder(base64.StdEncoding, w)
		if _, err := io.Copy(enc, content); err != nil {
			return fmt.Errorf("hosttest: reading blob content: %w", err)
		}
		if err := enc.Close(); err != nil {
			return err
		}
		w.WriteString(`"`)
	} else {
		// The outer string's quote, then the inner string's quote escaped.
		w.WriteString(`"\"`)
		tw := twiceEscaper{w: w}
		if _, err := io.Copy(tw, content); err != nil {
			return fmt.Errorf("hosttest: reading blob content: %w", err)
		}
		w.WriteString(`\""`)
	}
	w.WriteString("}")
	if !inv.MetadataFirst {
		w.WriteString(`,"Metadata":`)
		w.Write(meta)
	}
	_, err := w.WriteString("}")
	return err
}

// twiceEscaper writes bytes as the body of a string encoded twice: escaped
// once for the inner JSON string, and that escaped again for the outer one.
// Each byte maps on its own (escapes never span bytes), so chunk boundaries
// need no care, and multi-byte UTF-8 passes through untouched.
type twiceEscaper struct{ w *bufio.Writer }

// twiceEscaped maps the bytes that need escaping to their form on the wire.
// A quote is \" once, and escaping that gives \\\" (backslash escaped,
// then quote escaped); a newline is \n once and \\n twice; other control
// characters are \u00XX once and \\u00XX twice.
var twiceEscaped = func() (t [256]string) {
	for c := range 0x20 {
		t[c] = fmt.Sprintf(`\\u%04x`, c)
	}
	t['\b'], t['\f'], t['\n'], t['\r'], t['\t'] = `\\b`, `\\f`, `\\n`, `\\r`, `\\t`
	t['"'] = `\\\"`
	t['\\'] = `\\\\`
	return t
}()

func (e twiceEscaper) Write(p []byte) (int, error) {
	start := 0
	for i, c := range p {
		if esc := twiceEscaped[c]; esc != "" {
			e.w.Write(p[start:i])
			e.w.WriteString(esc)
			start = i + 1
		}
	}
	e.w.Write(p[start:])
	// bufio.Writer errors are sticky: the final Flush reports them.
	return len(p), nil
}

// blobMetadata builds the Metadata object of a blob-trigger invocation.
// Top-level string values are encoded twice, as the host does; objects
// (Properties, sys) are plain JSON objects whose strings are encoded once.
func blobMetadata(inv BlobInvocation) []byte {
	segs := strings.Split(inv.Name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	uri := inv.AccountURL + "/" + url.PathEscape(inv.Container) + "/" + strings.Join(segs, "/")

	props := []member{
		{"LastModified", encode(dotNetOffset(inv.LastModified))},
		{"CreatedOn", encode(dotNetOffset(inv.CreatedOn))},
		{"Metadata", []byte("{}")},
		{"BlobType", encode(inv.BlobType)},
		{"ETag", encode(inv.ETag)},
		{"ContentType", encode("application/octet-stream")},
		{"ContentLength", []byte(fmt.Sprint(inv.ContentLength))},
		{"IsServerEncrypted", []byte("true")},
	}
	if inv.BlobType == "AppendBlob" {
		// Azure Monitor appends a block per flush; any plausible count does.
		props = append(props, member{"AppendBlobCommittedBlockCount", []byte(fmt.Sprint(1 + inv.ContentLength/(64<<10)))})
	}
	return object(
		member{"BlobTrigger", encodeTwice(inv.Container + "/" + inv.Name)},
		member{"Uri", encodeTwice(uri)},
		member{"Properties", object(props...)},
		member{"Metadata", []byte("{}")},
		member{"name", encodeTwice(inv.Name)},
		member{"sys", sys(inv.Function)},
	)
}

// TimerInvocation describes a timer-trigger invocation. Zero fields take
// the defaults documented on each.
type TimerInvocation struct {
	Function     string // default "CatchUp"
	Binding      string // default "timer"
	IsPastDue    bool
	Last         time.Time // default now minus five minutes
	Next         time.Time // default now plus five minutes
	InvocationID string    // default: a random UUID v4
}

// NewTimerRequest builds the host's POST <handlerURL>/<Function> for a
// timer-trigger invocation. The body is small and held; the request can be
// sent again (GetBody is set).
func NewTimerRequest(ctx context.Context, handlerURL string, inv TimerInvocation) (*http.Request, error) {
	inv.Function = or(inv.Function, DefaultTimerFunction)
	inv.Binding = or(inv.Binding, DefaultTimerBinding)
	now := time.Now().UTC().Truncate(time.Second)
	if inv.Last.IsZero() {
		inv.Last = now.Add(-5 * time.Minute)
	}
	if inv.Next.IsZero() {
		inv.Next = now.Add(5 * time.Minute)
	}
	inv.InvocationID = or(inv.InvocationID, newUUID())

	timer := object(
		member{"Schedule", []byte(`{"AdjustForDST":true}`)},
		member{"ScheduleStatus", object(
			member{"Last", encode(dotNetOffset(inv.Last))},
			member{"Next", encode(dotNetOffset(inv.Next))},
			member{"LastUpdated", encode(dotNetOffset(inv.Last))},
		)},
		member{"IsPastDue", []byte(fmt.Sprint(inv.IsPastDue))},
	)
	body := object(
		member{"Data", object(member{inv.Binding, timer})},
		member{"Metadata", object(member{inv.Binding, timer}, member{"sys", sys(inv.Function)})},
	)
	return newRequest(ctx, handlerURL, inv.Function, inv.InvocationID, bytes.NewReader(body))
}

func newRequest(ctx context.Context, handlerURL, function, invocationID string, body io.Reader) (*http.Request, error) {
	target := strings.TrimSuffix(handlerURL, "/") + "/" + url.PathEscape(function)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, body)
	if err != nil {
		return nil, fmt.Errorf("hosttest: building request for %s: %w", function, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderInvocationID, invocationID)
	req.Header.Set(HeaderHostVersion, HostVersion)
	return req, nil
}

// Do sends req with client (nil means http.DefaultClient) and reads the
// handler's reply as the host does.
//
// It returns the status and the decoded Response (numbers as json.Number),
// and an error when the request fails, when the status is not 200 (a host
// would retry and finally poison a blob; the body is quoted), or when the
// reply is not JSON of the host's shape: Content-Type application/json, an
// object with Outputs an object, Logs an array of strings, and ReturnValue
// present. Whatever could be decoded is returned along with the error.
func Do(client *http.Client, req *http.Request) (int, funchost.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, funchost.Response{}, fmt.Errorf("hosttest: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxReply+1))
	if err != nil {
		return res.StatusCode, funchost.Response{}, fmt.Errorf("hosttest: reading reply to %s: %w", req.URL.Path, err)
	}
	if len(body) > maxReply {
		return res.StatusCode, funchost.Response{}, fmt.Errorf("hosttest: reply to %s is larger than %d bytes", req.URL.Path, maxReply)
	}
	resp, shapeErr := decodeReply(res.Header.Get("Content-Type"), body)
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, resp, fmt.Errorf("hosttest: %s replied %d, not 200: the host would retry it: %s",
			req.URL.Path, res.StatusCode, snippet(body))
	}
	if shapeErr != nil {
		return res.StatusCode, resp, fmt.Errorf("hosttest: reply to %s: %w; body: %s", req.URL.Path, shapeErr, snippet(body))
	}
	return res.StatusCode, resp, nil
}

// decodeReply checks a reply against the shape funchost.WriteResponse
// promises and decodes it.
func decodeReply(contentType string, body []byte) (funchost.Response, error) {
	var resp funchost.Response
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return resp, fmt.Errorf("Content-Type is %q, want application/json", contentType)
	}
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return resp, fmt.Errorf("body is not a JSON object: %v", err)
	}
	if top == nil {
		return resp, errors.New("body is null, want an object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return resp, errors.New("data after the JSON object")
	}
	var problems []string
	if raw, ok := top["Outputs"]; !ok {
		problems = append(problems, "Outputs is missing")
	} else if err := decodeNumbers(raw, &resp.Outputs); err != nil || resp.Outputs == nil {
		problems = append(problems, fmt.Sprintf("Outputs is %s, want an object", raw))
	}
	if raw, ok := top["Logs"]; !ok {
		problems = append(problems, "Logs is missing")
	} else if err := json.Unmarshal(raw, &resp.Logs); err != nil || resp.Logs == nil {
		problems = append(problems, fmt.Sprintf("Logs is %s, want an array of strings", raw))
	}
	if raw, ok := top["ReturnValue"]; !ok {
		problems = append(problems, "ReturnValue is missing")
	} else if err := decodeNumbers(raw, &resp.ReturnValue); err != nil {
		problems = append(problems, fmt.Sprintf("ReturnValue: %v", err))
	}
	if len(problems) > 0 {
		return resp, errors.New(strings.Join(problems, "; "))
	}
	return resp, nil
}

func decodeNumbers(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

func snippet(body []byte) string {
	const max = 512
	if len(body) > max {
		return fmt.Sprintf("%q…", body[:max])
	}
	return fmt.Sprintf("%q", body)
}

// member is one member of a JSON object built in order: the host's member
// order is stable, and tests read better when ours is too.
type member struct {
	key   string
	value []byte // JSON
}

func object(members ...member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(encode(m.key))
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// encode is a JSON string as the host's serializer writes one: no HTML
// escaping.
func encode(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// encodeTwice is the host's form of a string value in Metadata: the JSON
// encoding of the JSON encoding.
func encodeTwice(s string) []byte { return encode(string(encode(s))) }

func sys(function string) []byte {
	return object(
		member{"MethodName", encode(function)},
		member{"UtcNow", encode(time.Now().UTC().Format(dotNetUTC))},
		member{"RandGuid", encode(newUUID())},
	)
}

// .NET's round-trip forms: seven fraction digits at most, trailing zeros
// dropped; a DateTimeOffset carries its offset, a UTC DateTime a Z.
const (
	dotNetOffsetLayout = "2006-01-02T15:04:05.9999999-07:00"
	dotNetUTC          = "2006-01-02T15:04:05.9999999Z07:00"
)

func dotNetOffset(t time.Time) string { return t.Format(dotNetOffsetLayout) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Defaults of an Event Grid trigger invocation.
const (
	DefaultEventGridFunction = "EventGridTrigger"
	DefaultEventGridBinding  = "eventGridEvent"
)

// EventGridInvocation describes an Event Grid trigger invocation carrying
// one Microsoft.Storage.BlobCreated event, as a system topic on a storage
// account raises it. Zero fields take the defaults documented on each.
type EventGridInvocation struct {
	Function  string // default "EventGridTrigger"
	Binding   string // Data key, default "eventGridEvent"
	Name      string // blob path inside the container
	Container string // default "insights-logs-auditevent"
	// AccountURL is the blob endpoint the event's url starts with,
	// default "http://127.0.0.1:10000/devstoreaccount1". URL, when set,
	// replaces the whole url (an event naming any blob at all).
	AccountURL string
	URL        string
	// Topic is the storage account's resource id, default one built from
	// the account's name.
	Topic         string
	EventType     string // default "Microsoft.Storage.BlobCreated"
	API           string // default "PutBlob" (Azure Monitor creating the append blob)
	BlobType      string // default "AppendBlob"
	ContentLength int64
	ETag          string    // without quotes, as events carry it; default a random "0x8DC…"
	EventTime     time.Time // default now
	ID            string    // default: a random UUID v4
	// CloudEvents sends the event in the CloudEvents 1.0 schema (an event
	// subscription's delivery schema may be either).
	CloudEvents  bool
	InvocationID string // default: a random UUID v4
}

// EventURL is the url an EventGridInvocation's event names.
func (inv EventGridInvocation) EventURL() string {
	if inv.URL != "" {
		return inv.URL
	}
	segs := strings.Split(inv.Name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimSuffix(or(inv.AccountURL, DefaultAccountURL), "/") + "/" + url.PathEscape(or(inv.Container, DefaultContainer)) + "/" + strings.Join(segs, "/")
}

// NewEventGridRequest builds the host's POST <handlerURL>/<Function> for an
// Event Grid trigger invocation: Data holds the event's JSON text, indented
// as the extension's JToken→string converter writes it, encoded twice (a
// string input the host serializes, inside the serialized context);
// Metadata holds the event's data object and sys. The body is small and
// held; the request can be sent again.
func NewEventGridRequest(ctx context.Context, handlerURL string, inv EventGridInvocation) (*http.Request, error) {
	if inv.Name == "" && inv.URL == "" {
		return nil, errors.New("hosttest: EventGridInvocation needs Name or URL")
	}
	inv.Function = or(inv.Function, DefaultEventGridFunction)
	inv.Binding = or(inv.Binding, DefaultEventGridBinding)
	inv.Container = or(inv.Container, DefaultContainer)
	inv.EventType = or(inv.EventType, "Microsoft.Storage.BlobCreated")
	inv.API = or(inv.API, "PutBlob")
	inv.BlobType = or(inv.BlobType, DefaultBlobType)
	inv.ETag = strings.Trim(or(inv.ETag, "0x8DC"+strings.ToUpper(randomHex(6))[:11]), `"`)
	if inv.EventTime.IsZero() {
		inv.EventTime = time.Now().UTC()
	}
	inv.ID = or(inv.ID, newUUID())
	inv.InvocationID = or(inv.InvocationID, newUUID())
	blobURL := inv.EventURL()
	if inv.Topic == "" {
		acct := "devstoreaccount1"
		if u, err := url.Parse(blobURL); err == nil {
			if h, _, ok := strings.Cut(u.Hostname(), "."); ok && strings.Contains(u.Hostname(), ".blob.") {
				acct = h
			} else if seg, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/"); seg != "" {
				acct = seg
			}
		}
		inv.Topic = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/" + acct
	}

	// The data object, as Azure Storage fills it
	// (learn.microsoft.com/azure/event-grid/event-schema-blob-storage).
	data := object(
		member{"api", encode(inv.API)},
		member{"clientRequestId", encode(newUUID())},
		member{"requestId", encode(newUUID())},
		member{"eTag", encode(inv.ETag)},
		member{"contentType", encode("application/octet-stream")},
		member{"contentLength", []byte(fmt.Sprint(inv.ContentLength))},
		member{"blobType", encode(inv.BlobType)},
		member{"url", encode(blobURL)},
		member{"sequencer", encode("0000000000000000000000000000" + strings.ToUpper(randomHex(2)))},
		member{"storageDiagnostics", object(member{"batchId", encode(newUUID())})},
	)
	subject := "/blobServices/default/containers/" + inv.Container + "/blobs/" + inv.Name
	var event []byte
	if inv.CloudEvents {
		event = object(
			member{"source", encode(inv.Topic)},
			member{"subject", encode(subject)},
			member{"type", encode(inv.EventType)},
			member{"time", encode(inv.EventTime.Format(dotNetUTC))},
			member{"id", encode(inv.ID)},
			member{"data", data},
			member{"specversion", encode("1.0")},
		)
	} else {
		event = object(
			member{"topic", encode(inv.Topic)},
			member{"subject", encode(subject)},
			member{"eventType", encode(inv.EventType)},
			member{"id", encode(inv.ID)},
			member{"data", data},
			member{"dataVersion", encode("")},
			member{"metadataVersion", encode("1")},
			member{"eventTime", encode(inv.EventTime.Format(dotNetUTC))},
		)
	}
	// JToken.ToString(Formatting.Indented): two-space indent.
	var indented bytes.Buffer
	if err := json.Indent(&indented, event, "", "  "); err != nil {
		return nil, fmt.Errorf("hosttest: event: %w", err)
	}
	body := object(
		member{"Data", object(member{inv.Binding, encodeTwice(indented.String())})},
		member{"Metadata", object(member{"data", data}, member{"sys", sys(inv.Function)})},
	)
	return newRequest(ctx, handlerURL, inv.Function, inv.InvocationID, bytes.NewReader(body))
}
