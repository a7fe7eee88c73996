package index

import (
	"bytes"
	"compress/flate"
	_ "embed"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// Layout is the version of the row layout this code writes and reads: the
// V property of every Events and Postings row and of each checkpoint. Rows
// of layout 1 (a full copy of the record per Events, ByCaller, ByIp and
// ByObject row, no V) are recognised and refused; `handler backfill`
// rebuilds them.
const Layout = 2

// Properties of a layout-2 Events row. Only what server-side filters need
// is a column; the record itself is R, the DEFLATE of its JSON as logged.
const (
	PropLayout    = "V" // Edm.Int32: Layout
	PropOp        = "O" // OperationName
	PropStat      = "S" // Edm.Int32: Status (parse.Record.Status)
	PropTLS       = "L" // TlsVersion, only when it sorts before TLSFilterBound (see there)
	PropDuration  = "D" // Edm.Double: durationMs, absent when not logged
	PropRecord    = "R" // Edm.Binary: see EncodeRecord; R1, R2 … continue it
	PropCount     = "N" // Edm.Int32 on a Postings row: its entries
	PropPostings  = "P" // Edm.Binary on a Postings row: see Posting; P1, P2 … continue it
	maxBinaryPart = 64000
)

// TLSFilterBound is the old-TLS detection's server-side bound: it asks
// for L lt 'TLS1_2'. Only versions that sort before it are stored, since
// no filter asks for the others (the record in R keeps every version):
// most rows (TLS1_2, TLS1_3) carry no L.
const TLSFilterBound = "TLS1_2"

// Posting kinds: the first part of a Postings PartitionKey.
const (
	KindCaller = "c"
	KindIP     = "i"
	KindObject = "o"
)

//go:embed dict.bin
var recordDict []byte

// RecordDict is the DEFLATE preset dictionary of R: Key Vault records
// (internal/parse/testdata, the 32 samples), so that even a record stored
// alone compresses like one in a stream of its kind. Changing it changes
// the layout.
func RecordDict() []byte { return recordDict }

// BuildDict makes the preset dictionary from sample records (JSON Lines):
// their lines, the last 32 KiB of them (DEFLATE's window), cut at a line.
func BuildDict(samples []byte) []byte {
	const window = 32 << 10
	if len(samples) <= window {
		return append([]byte(nil), samples...)
	}
	cut := samples[len(samples)-window:]
	if i := bytes.IndexByte(cut, '\n'); i >= 0 {
		cut = cut[i+1:]
	}
	return append([]byte(nil), cut...)
}

var flaters = sync.Pool{New: func() any {
	w, err := flate.NewWriterDict(io.Discard, flate.BestCompression, recordDict)
	if err != nil {
		panic(err) // only for a bad level
	}
	return w
}}

// deflate compresses b with the preset dictionary.
func deflate(dst *bytes.Buffer, b ...[]byte) {
	w := flaters.Get().(*flate.Writer)
	w.Reset(dst)
	for _, p := range b {
		w.Write(p) //nolint:errcheck // a bytes.Buffer does not fail
	}
	w.Close() //nolint:errcheck // likewise
	flaters.Put(w)
}

// inflaters keeps DEFLATE readers (each holds a 32 KiB window) between
// rows: a page of events decodes a hundred of them.
var inflaters sync.Pool

// errTooLarge says a compressed column inflates past what its writer can
// have written: a planted row (anyone with Table Data Contributor can
// write one), never one of ours.
var errTooLarge = errors.New("index: compressed column inflates past its limit")

// inflate undoes deflate, refusing to produce more than limit bytes: a
// column's declared or compressed size is a claim, and DEFLATE expands
// up to 1032:1, so a 61 KB row could otherwise take 63 MB. It fails —
// never truncates — past the limit.
func inflate(b []byte, limit int) ([]byte, error) {
	var r io.ReadCloser
	if v := inflaters.Get(); v != nil {
		r = v.(io.ReadCloser)
		if err := r.(flate.Resetter).Reset(bytes.NewReader(b), recordDict); err != nil {
			return nil, fmt.Errorf("index: corrupt compressed column: %w", err)
		}
	} else {
		r = flate.NewReaderDict(bytes.NewReader(b), recordDict)
	}
	// The first guess is what these columns usually inflate to (about 4×);
	// the buffer doubles from there, never past limit+1, so refusing a
	// bomb costs at most about twice the limit.
	buf := make([]byte, 0, min(4*len(b)+64, limit+1))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, fmt.Errorf("%w (%d bytes)", errTooLarge, limit)
			}
			buf = append(make([]byte, 0, min(2*cap(buf), limit+1)), buf...)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("index: corrupt compressed column: %w", err)
		}
	}
	if len(buf) > limit {
		return nil, fmt.Errorf("%w (%d bytes)", errTooLarge, limit)
	}
	inflaters.Put(r)
	return buf, nil
}

// maxRecordInflate bounds a decoded R: the longest record parse accepts,
// its blob's name (Azure allows 1,024 characters, up to 4 bytes each in
// UTF-8) and the length prefix.
const maxRecordInflate = parse.DefaultMaxRecordBytes + 4*1024 + binary.MaxVarintLen64

// EncodeRecord is the value of R: DEFLATE (preset dictionary RecordDict)
// of uvarint(len(raw)) raw blob — the record's JSON as logged and the name
// of its blob. The blob name comes last so that it compresses against the
// record's resourceId.
func EncodeRecord(raw []byte, blob string) []byte {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(raw)))
	var out bytes.Buffer
	deflate(&out, hdr[:n], raw, []byte(blob))
	return out.Bytes()
}

// DecodeRecord undoes EncodeRecord.
func DecodeRecord(b []byte) (raw []byte, blob string, err error) {
	p, err := inflate(b, maxRecordInflate)
	if err != nil {
		return nil, "", err
	}
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, "", errors.New("index: corrupt record column")
	}
	return p[k : k+int(n)], string(p[k+int(n):]), nil
}

// appendBinary writes name (and name1, name2 … for what does not fit in
// one property) as Edm.Binary.
func appendBinary(b []byte, name string, v []byte) []byte {
	for i := 0; i == 0 || len(v) > 0; i++ {
		part := v[:min(len(v), maxBinaryPart)]
		v = v[len(part):]
		n := name
		if i > 0 {
			n += strconv.Itoa(i)
		}
		b = append(b, `,"`...)
		b = append(b, n...)
		b = append(b, `@odata.type":"Edm.Binary","`...)
		b = append(b, n...)
		b = append(b, `":"`...)
		b = base64.StdEncoding.AppendEncode(b, part)
		b = append(b, '"')
	}
	return b
}

// binarySize is the billed size of appendBinary's properties.
func binarySize(name string, n int) int {
	size := 0
	for i := 0; i == 0 || n > 0; i++ {
		part := min(n, maxBinaryPart)
		n -= part
		nl := len(name)
		if i > 0 {
			nl += len(strconv.Itoa(i))
		}
		size += 8 + 2*nl + 4 + part
	}
	return size
}

// maxFilterColumn bounds the filter columns O and L: the record in R keeps
// the whole value.
const maxFilterColumn = 256

// maxRecordColumn bounds R (all its parts) so that the row stays under the
// entity limit with its keys and columns.
const maxRecordColumn = maxEntityBytes - 8*1024

// fitRecord returns raw, or, when its compressed form is over the entity
// limit, raw with its largest raw values (properties, then the identity)
// replaced by JSON strings of their cut text ending with TruncatedMarker,
// and the names of those values, comma-separated.
func fitRecord(rec *parse.Record, orig []byte, blob string) (r []byte, truncated string) {
	r = EncodeRecord(orig, blob)
	if binarySize(PropRecord, len(r)) <= maxRecordColumn {
		return r, ""
	}
	raw := append([]byte(nil), orig...)
	var cut []string
	for _, f := range []struct {
		name string
		v    []byte
	}{{PropProperties, rec.Properties}, {PropClaims, rec.Identity.Claims}} {
		i := bytes.Index(raw, f.v)
		if len(f.v) == 0 || i < 0 {
			continue
		}
		keep := min(len(f.v), 256<<10)
		s := strings.ToValidUTF8(string(f.v[:keep]), "")
		p := truncate(strProp{value: s, units: utf16Len(s)}, utf16Len(s)/2)
		rep := parse.AppendString(nil, p.value)
		raw = append(raw[:i], append(rep, raw[i+len(f.v):]...)...)
		cut = append(cut, f.name)
		if r = EncodeRecord(raw, blob); binarySize(PropRecord, len(r)) <= maxRecordColumn {
			return r, strings.Join(cut, ",")
		}
	}
	// Incompressible beyond the values above: keep the fields every
	// query filters on, and say so.
	min := fmt.Appendf(nil, `{"time":%s,"resourceId":%s,"operationName":%s,"kvaudit":%s}`,
		parse.AppendString(nil, parse.FormatTime(rec.Time)), parse.AppendString(nil, rec.ResourceID),
		parse.AppendString(nil, rec.OperationName), parse.AppendString(nil, TruncatedMarker))
	return EncodeRecord(min, blob), "record"
}

// eventRow is rec's layout-2 Events row.
func eventRow(rec *parse.Record, raw []byte, pk, rk string) Entity {
	r, truncated := fitRecord(rec, raw, rec.Blob)
	b := make([]byte, 0, 160+len(pk)+len(rk)+len(rec.OperationName)+len(r)*4/3)
	b = appendKeys(b, pk, rk)
	b = append(b, `,"V":`...)
	b = strconv.AppendInt(b, Layout, 10)
	b = append(b, `,"O":`...)
	// Key Vault's operation names are short; a longer one (a blob not
	// written by Azure Monitor) is cut rather than let the row be refused.
	b = appendJSONString(b, cutString(rec.OperationName, maxFilterColumn))
	b = append(b, `,"S":`...)
	b = strconv.AppendInt(b, int64(int32(rec.Status)), 10)
	if tls := cutString(rec.TLSVersion, maxFilterColumn); tls != "" && tls < TLSFilterBound {
		b = append(b, `,"L":`...)
		b = appendJSONString(b, tls)
	}
	if rec.HasDuration {
		b = append(b, `,"D@odata.type":"Edm.Double","D":`...)
		b = appendDouble(b, rec.DurationMs)
	}
	if truncated != "" {
		b = append(b, `,"Truncated":`...)
		b = appendJSONString(b, truncated)
	}
	b = appendBinary(b, PropRecord, r)
	b = append(b, '}')
	return Entity{Table: TableEvents, PK: pk, RK: rk, Body: b}
}

// appendDouble writes an Edm.Double value: a number, or a string for the
// values JSON has no number for.
func appendDouble(b []byte, f float64) []byte {
	switch {
	case f != f:
		return append(b, `"NaN"`...)
	case f > 1.7976931348623157e308:
		return append(b, `"INF"`...)
	case f < -1.7976931348623157e308:
		return append(b, `"-INF"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// cutString keeps at most n bytes of s, at a character boundary.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// appendKeys opens an entity's JSON with its keys: `{"PartitionKey":…,"RowKey":…`.
func appendKeys(b []byte, pk, rk string) []byte {
	b = append(b, `{"PartitionKey":`...)
	b = appendJSONString(b, pk)
	b = append(b, `,"RowKey":`...)
	return appendJSONString(b, rk)
}
