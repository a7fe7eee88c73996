package funchost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxMetadata is the capture limit ReadInvocation applies when given
// zero or less. A blob-trigger Metadata object is a few KiB.
const DefaultMaxMetadata = 1 << 20

var (
	// ErrMalformed reports an invocation body that is not well-formed JSON or
	// not of the host's shape (a top-level object whose Data is an object).
	ErrMalformed = errors.New("funchost: malformed invocation")

	// ErrTooLarge reports an invocation whose Metadata and key names exceed
	// the limit given to ReadInvocation.
	ErrTooLarge = errors.New("funchost: invocation metadata too large")

	// ErrNoBlobName reports blob-trigger metadata with neither "name" nor
	// "BlobTrigger": the invocation is not a blob trigger's.
	ErrNoBlobName = errors.New("funchost: invocation metadata names no blob")
)

// Invocation is what ReadInvocation keeps of a host invocation: the
// Metadata, raw, and the size of each Data value, which it skipped.
type Invocation struct {
	// Metadata holds the top-level Metadata object's members as they
	// arrived. It is nil when the body has no Metadata or Metadata is null.
	Metadata map[string]json.RawMessage

	// DataBytes holds, per binding name in Data, the size in bytes of the
	// value as it arrived on the wire (base64 or escaped text, quotes
	// included). It is nil when the body has no Data or Data is null.
	DataBytes map[string]int64

	// Data holds, raw, the Data values of the bindings ReadInvocation was
	// asked to keep (an Event Grid event is small and is the message
	// itself); nil when none was asked for or found.
	Data map[string]json.RawMessage
}

// ReadInvocation reads a host invocation body as a stream, to its end.
//
// Every Data value is skipped byte by byte — validated as well-formed JSON
// but never held — and its size recorded; Metadata is captured and kept raw;
// other top-level keys are skipped. Keys may come in any order; when a
// top-level key repeats, the last occurrence wins, as with encoding/json.
// Memory use is constant in the size of Data.
//
// maxMetadata bounds the bytes held: the Metadata value plus the names of
// top-level and Data keys, and the Data values of the bindings named in
// keep, counted together over the whole body (zero or less means
// DefaultMaxMetadata). Beyond it ReadInvocation fails with an error
// wrapping ErrTooLarge. The Data values of the bindings in keep are held
// in Invocation.Data; every other Data value is skipped.
//
// A body that is not a single well-formed JSON object, or whose Data is
// neither an object nor null, or whose Metadata is neither an object nor
// null, fails with an error wrapping ErrMalformed; a body that ends early
// wraps io.ErrUnexpectedEOF as well. Errors from r are returned wrapped.
// ReadInvocation accepts exactly the bodies json.Valid accepts, nesting
// limit included.
func ReadInvocation(r io.Reader, maxMetadata int64, keep ...string) (*Invocation, error) {
	if maxMetadata <= 0 {
		maxMetadata = DefaultMaxMetadata
	}
	s := newScanner(r, maxMetadata)
	s.keep = keep

	c, err := s.skipWS()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if err != nil {
		return nil, err
	}
	if c != '{' {
		return nil, s.syntax("invocation is not a JSON object (starts with %q)", c)
	}
	if err := s.open(); err != nil {
		return nil, err
	}

	inv := &Invocation{}
	var metaRaw []byte
	var dataErr error // set while the last Data seen is not an object
	if c, err = s.next(); err != nil {
		return nil, err
	}
	if c == '}' {
		if err := s.consume1(); err != nil {
			return nil, err
		}
	} else {
		for {
			key, err := s.readKey(c)
			if err != nil {
				return nil, err
			}
			if err := s.expect(':', "':' after object member name"); err != nil {
				return nil, err
			}
			if c, err = s.next(); err != nil {
				return nil, err
			}
			switch key {
			case "Metadata":
				if metaRaw, err = s.captureValue(); err != nil {
					return nil, err
				}
			case "Data":
				switch c {
				case '{':
					if inv.DataBytes, inv.Data, err = s.readData(); err != nil {
						return nil, err
					}
					dataErr = nil
				case 'n':
					if err := s.skipLiteral("null"); err != nil {
						return nil, err
					}
					inv.DataBytes, inv.Data, dataErr = nil, nil, nil
				default:
					dataErr = s.syntax("Data is not an object")
					if err := s.skipValue(); err != nil {
						return nil, err
					}
					inv.DataBytes, inv.Data = nil, nil
				}
			default:
				if err := s.skipValue(); err != nil {
					return nil, err
				}
			}
			if c, err = s.next(); err != nil {
				return nil, err
			}
			if c == '}' {
				s.depth--
				if err := s.consume1(); err != nil {
					return nil, err
				}
				break
			}
			if c != ',' {
				return nil, s.syntax("expected ',' or '}' after object member, found %q", c)
			}
			if err := s.consume1(); err != nil {
				return nil, err
			}
			if c, err = s.next(); err != nil {
				return nil, err
			}
		}
	}

	// Reading to the end both validates the body and lets the server reuse
	// the connection.
	if _, err := s.skipWS(); err == nil {
		return nil, s.syntax("data after the invocation object")
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if dataErr != nil {
		return nil, dataErr
	}
	if metaRaw != nil {
		if err := json.Unmarshal(metaRaw, &inv.Metadata); err != nil {
			return nil, fmt.Errorf("%w: Metadata is not an object: %v", ErrMalformed, err)
		}
	}
	return inv, nil
}

// readKey reads an object member name, unescaped as encoding/json would
// (invalid UTF-8 becomes U+FFFD); c is the already-peeked first byte.
func (s *scanner) readKey(c byte) (string, error) {
	raw, err := s.captureString(c)
	if err != nil {
		return "", err
	}
	body := raw[1 : len(raw)-1]
	if !containsByte(body, '\\') && utf8.Valid(body) {
		return string(body), nil
	}
	var key string
	if err := json.Unmarshal(raw, &key); err != nil {
		return "", s.syntax("object member name: %v", err) // not reached: skipString validated it
	}
	return key, nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// readData skips the Data object's values, recording each one's size and
// keeping the values of the bindings in s.keep; the current byte is its
// opening brace.
func (s *scanner) readData() (map[string]int64, map[string]json.RawMessage, error) {
	if err := s.open(); err != nil {
		return nil, nil, err
	}
	sizes := make(map[string]int64)
	var kept map[string]json.RawMessage
	c, err := s.next()
	if err != nil {
		return nil, nil, err
	}
	if c == '}' {
		s.depth--
		return sizes, nil, s.consume1()
	}
	for {
		key, err := s.readKey(c)
		if err != nil {
			return nil, nil, err
		}
		if err := s.expect(':', "':' after object member name"); err != nil {
			return nil, nil, err
		}
		if _, err := s.next(); err != nil {
			return nil, nil, err
		}
		start := s.off
		if slices.Contains(s.keep, key) {
			v, err := s.captureValue()
			if err != nil {
				return nil, nil, err
			}
			if kept == nil {
				kept = map[string]json.RawMessage{}
			}
			kept[key] = v
		} else if err := s.skipValue(); err != nil {
			return nil, nil, err
		}
		sizes[key] = s.off - start
		if c, err = s.next(); err != nil {
			return nil, nil, err
		}
		if c == '}' {
			s.depth--
			return sizes, kept, s.consume1()
		}
		if c != ',' {
			return nil, nil, s.syntax("expected ',' or '}' after Data member, found %q", c)
		}
		if err := s.consume1(); err != nil {
			return nil, nil, err
		}
		if c, err = s.next(); err != nil {
			return nil, nil, err
		}
	}
}

// String reads a Metadata value that is a JSON string, encoded once or twice
// (the host encodes every string value twice: "name" arrives as
// "\"resourceId=…\""). ok is false when key is absent or its value is not a
// string.
//
// A once-decoded value that is itself a JSON string literal is decoded
// again, so a once-encoded value that happens to be one (a blob name that
// begins and ends with a quote) loses a level; the host never sends those.
func (inv *Invocation) String(key string) (string, bool) {
	raw, ok := inv.Metadata[key]
	if !ok {
		return "", false
	}
	return decodeString(raw)
}

func decodeString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' { // null would decode as ""
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var inner string
		if err := json.Unmarshal([]byte(s), &inner); err == nil {
			return inner, true
		}
	}
	return s, true
}

// BlobTrigger is the blob-trigger metadata of an invocation.
type BlobTrigger struct {
	// Name is the blob's path inside its container.
	Name string
	// URI is the blob's URL as the host saw it.
	URI string
	// ETag carries its quotes, as Azure returns it: "\"0x8DC…\"".
	ETag string
	// BlobType is "BlockBlob", "AppendBlob" or "PageBlob".
	BlobType      string
	ContentLength int64
	LastModified  time.Time
	CreatedOn     time.Time
}

// Blob reads the blob-trigger metadata. Name is required: it comes from
// "name", or, for a binding path without {name}, from "BlobTrigger"
// (container/name) minus the container; without either Blob fails with
// ErrNoBlobName. The other fields are best effort: zero when absent or
// unreadable. Properties may arrive as an object or as a JSON string holding
// one, encoded once or twice.
func (inv *Invocation) Blob() (BlobTrigger, error) {
	var b BlobTrigger
	b.Name, _ = inv.String("name")
	if b.Name == "" {
		if path, ok := inv.String("BlobTrigger"); ok {
			if _, name, found := strings.Cut(path, "/"); found {
				b.Name = name
			}
		}
	}
	if b.Name == "" {
		return BlobTrigger{}, ErrNoBlobName
	}
	b.URI, _ = inv.String("Uri")

	props := object(inv.Metadata["Properties"])
	if s, ok := decodeString(field(props, "ETag")); ok && s != "" {
		b.ETag = quoteETag(s)
	}
	b.BlobType = blobType(field(props, "BlobType"))
	b.ContentLength, _ = integer(field(props, "ContentLength"))
	b.LastModified = timestamp(field(props, "LastModified"))
	b.CreatedOn = timestamp(field(props, "CreatedOn"))
	return b, nil
}

// object reads a JSON object that may also arrive as a string holding the
// object's text. It returns nil when raw is neither.
func object(raw json.RawMessage) map[string]json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		s, ok := decodeString(raw)
		if !ok {
			return nil
		}
		raw = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return m
}

// field looks key up exactly, then ignoring case: serializers differ on
// the case of property names.
func field(m map[string]json.RawMessage, key string) json.RawMessage {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// quoteETag returns the ETag in the quoted form Azure returns, whether
// decoding left it quoted (double encoding) or stripped its quotes (single
// encoding of a quoted value decodes one level too far).
func quoteETag(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' || strings.HasPrefix(s, `W/"`) {
		return s
	}
	return `"` + s + `"`
}

// blobType accepts the type as a name, with or without the "Blob" suffix,
// or as the number of the .NET enum (Block, Page, Append).
func blobType(raw json.RawMessage) string {
	if n, ok := integer(raw); ok {
		switch n {
		case 0:
			return "BlockBlob"
		case 1:
			return "PageBlob"
		case 2:
			return "AppendBlob"
		}
		return ""
	}
	s, _ := decodeString(raw)
	switch strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s, "Blob"), "blob")) {
	case "block":
		return "BlockBlob"
	case "page":
		return "PageBlob"
	case "append":
		return "AppendBlob"
	}
	return s
}

// integer reads a number, or a string holding one.
func integer(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	text := string(raw)
	if raw[0] == '"' {
		s, ok := decodeString(raw)
		if !ok {
			return 0, false
		}
		text = s
	}
	n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	return n, err == nil
}

// timeLayouts are the forms a DateTimeOffset takes on the way from the
// host: ISO 8601 from the JSON serializer (any number of fraction digits,
// offset or Z), without an offset, and .NET's invariant ToString form.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"01/02/2006 15:04:05 -07:00",
	"1/2/2006 3:04:05 PM -07:00",
}

// timestamp reads a time in UTC; zero when absent or unreadable.
func timestamp(raw json.RawMessage) time.Time {
	s, ok := decodeString(raw)
	if !ok || s == "" {
		return time.Time{}
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
