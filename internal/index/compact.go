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
	"sort"
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

// inflate undoes deflate.
func inflate(b []byte) ([]byte, error) {
	var r io.ReadCloser
	if v := inflaters.Get(); v != nil {
		r = v.(io.ReadCloser)
		if err := r.(flate.Resetter).Reset(bytes.NewReader(b), recordDict); err != nil {
			return nil, fmt.Errorf("index: corrupt compressed column: %w", err)
		}
	} else {
		r = flate.NewReaderDict(bytes.NewReader(b), recordDict)
	}
	out := make([]byte, 0, 4*len(b)+64)
	buf := bytes.NewBuffer(out)
	_, err := buf.ReadFrom(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("index: corrupt compressed column: %w", err)
	}
	inflaters.Put(r)
	return buf.Bytes(), nil
}

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
	p, err := inflate(b)
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
	b = appendJSONString(b, rec.OperationName)
	b = append(b, `,"S":`...)
	b = strconv.AppendInt(b, int64(int32(rec.Status)), 10)
	if tls := cutString(rec.TLSVersion, 256); tls != "" && tls < TLSFilterBound {
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

// Entry is one record in a posting: where its Events row is and what
// stats, filters and detections need without reading it.
type Entry struct {
	InvTicks int64  // the RowKey's inverted ticks
	Offset   int64  // the RowKey's offset
	Vault    string // lower case, as parse.Record.Vault
	Op       string
	Status   int
	Caller   string // CallerKey
	IP       string
	Object   string // as logged
	Client   string // clientInfo
	// Source is the lineage (SourceID) of the posting row the entry was
	// read from; it is in that row's RowKey, not in each entry.
	Source string
}

// EventRowKey is the RowKey of e's Events row.
func (e *Entry) EventRowKey() string {
	return fmt.Sprintf("%019d_%s_%012x", e.InvTicks, e.Source, e.Offset)
}

// EventPartition is the PartitionKey of e's Events row; day is the
// posting's (the record's UTC day).
func (e *Entry) EventPartition(day string) string {
	return EncodeKeyPart(e.Vault) + "|" + day
}

// PostingKey splits a Postings RowKey into the lookup key and the lineage.
func PostingKey(rk string) (key, source string, ok bool) {
	i := strings.LastIndexByte(rk, '|')
	if i < 0 {
		return "", "", false
	}
	j := strings.LastIndexByte(rk[:i], '|')
	if j < 0 {
		return "", "", false
	}
	return rk[:j], rk[j+1 : i], true
}

type postingKey struct{ kind, key, day, source string }

// Postings collects the posting entries of a chunk of records. Its zero
// value is ready; it is not safe for concurrent use.
type Postings struct {
	m map[postingKey][]Entry
}

// Add records rec (read from lineage sourceID) under each of its lookup
// keys: each distinct caller id, its IP, its object name.
func (p *Postings) Add(rec *parse.Record, sourceID string) {
	if p.m == nil {
		p.m = map[postingKey][]Entry{}
	}
	day := rec.Time.UTC().Format(DayLayout)
	e := Entry{
		InvTicks: maxTicks - Ticks(rec.Time), Offset: rec.Offset, Vault: rec.Vault, Op: rec.OperationName,
		Status: rec.Status, Caller: CallerKey(rec), IP: rec.CallerIPAddress,
		Object: rec.ObjectName, Client: rec.ClientInfo,
	}
	add := func(kind, key string) {
		k := postingKey{kind, EncodeKeyPart(key), day, sourceID}
		p.m[k] = append(p.m[k], e)
	}
	var seen [3]string
	for i, id := range [3]string{rec.Identity.ObjectID, rec.Identity.UPN, rec.Identity.AppID} {
		k := strings.ToLower(id)
		if k == "" || k == seen[0] || k == seen[1] {
			continue
		}
		seen[i] = k
		add(KindCaller, k)
	}
	if rec.CallerIPAddress != "" {
		add(KindIP, rec.CallerIPAddress)
	}
	if rec.ObjectName != "" {
		add(KindObject, rec.ObjectName)
	}
}

// maxEntriesPerRow bounds a posting row well under the entity limit
// (entries compress to a few bytes; the worst case is ~40 bytes).
const maxEntriesPerRow = 20000

// Rows appends the posting rows of the entries added since the last call,
// for the chunk starting at blob offset chunkStart, and forgets them. The
// keys depend only on the lineage, the chunk's start and the lookup key,
// so reading the same chunk again writes the same rows.
func (p *Postings) Rows(dst []Entity, chunkStart int64) []Entity {
	keys := make([]postingKey, 0, len(p.m))
	for k := range p.m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.kind+a.day != b.kind+b.day {
			return a.kind+a.day < b.kind+b.day
		}
		return a.key+"|"+a.source < b.key+"|"+b.source
	})
	for _, k := range keys {
		es := p.m[k]
		sort.Slice(es, func(i, j int) bool {
			if es[i].InvTicks != es[j].InvTicks {
				return es[i].InvTicks < es[j].InvTicks
			}
			return es[i].Offset < es[j].Offset
		})
		pk := k.kind + "|" + k.day
		for part := 0; len(es) > 0; part++ {
			n := min(len(es), maxEntriesPerRow)
			rk := fmt.Sprintf("%s|%s|%012x", k.key, k.source, chunkStart)
			if part > 0 {
				rk += "-" + strconv.Itoa(part)
			}
			payload := EncodePosting(es[:n])
			b := make([]byte, 0, 96+len(pk)+len(rk)+len(payload)*4/3)
			b = appendKeys(b, pk, rk)
			b = append(b, `,"V":`...)
			b = strconv.AppendInt(b, Layout, 10)
			b = append(b, `,"N":`...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = appendBinary(b, PropPostings, payload)
			b = append(b, '}')
			dst = append(dst, Entity{Table: TablePostings, PK: pk, RK: rk, Body: b})
			es = es[n:]
		}
	}
	clear(p.m)
	return dst
}

// EncodePosting is the value of P: DEFLATE (preset dictionary) of a string
// table and the entries, newest first, as varints: inverted ticks and
// offset as deltas from the previous entry, the rest as string indices.
func EncodePosting(es []Entry) []byte {
	idx := map[string]uint64{"": 0}
	strs := []string{""}
	id := func(s string) uint64 {
		if i, ok := idx[s]; ok {
			return i
		}
		idx[s] = uint64(len(strs))
		strs = append(strs, s)
		return idx[s]
	}
	var body []byte
	body = binary.AppendUvarint(body, uint64(len(es)))
	var prevT, prevO int64
	for _, e := range es {
		body = binary.AppendUvarint(body, uint64(e.InvTicks-prevT))
		body = binary.AppendVarint(body, e.Offset-prevO)
		prevT, prevO = e.InvTicks, e.Offset
		body = binary.AppendVarint(body, int64(e.Status))
		for _, s := range [...]string{e.Vault, e.Op, e.Caller, e.IP, e.Object, e.Client} {
			body = binary.AppendUvarint(body, id(s))
		}
	}
	var head []byte
	head = binary.AppendUvarint(head, uint64(len(strs)-1))
	for _, s := range strs[1:] {
		head = binary.AppendUvarint(head, uint64(len(s)))
		head = append(head, s...)
	}
	var out bytes.Buffer
	deflate(&out, head, body)
	return out.Bytes()
}

// DecodePosting undoes EncodePosting, appending to dst.
func DecodePosting(dst []Entry, b []byte) ([]Entry, error) {
	p, err := inflate(b)
	if err != nil {
		return dst, err
	}
	bad := errors.New("index: corrupt posting")
	next := func() uint64 {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			p = nil
			return 0
		}
		p = p[k:]
		return v
	}
	nstr := next()
	if nstr > uint64(len(p)) {
		return dst, bad
	}
	strs := make([]string, 1, nstr+1)
	for range nstr {
		n := next()
		if n > uint64(len(p)) {
			return dst, bad
		}
		strs = append(strs, string(p[:n]))
		p = p[n:]
	}
	str := func() string {
		i := next()
		if i >= uint64(len(strs)) {
			p = nil
			return ""
		}
		return strs[i]
	}
	n := next()
	if n > uint64(len(p)) {
		return dst, bad
	}
	var t, o int64
	for range n {
		if p == nil {
			return dst, bad
		}
		t += int64(next())
		d, k := binary.Varint(p)
		if k <= 0 {
			return dst, bad
		}
		p = p[k:]
		o += d
		st, k := binary.Varint(p)
		if k <= 0 {
			return dst, bad
		}
		p = p[k:]
		e := Entry{InvTicks: t, Offset: o, Status: int(st)}
		e.Vault, e.Op, e.Caller, e.IP, e.Object, e.Client = str(), str(), str(), str(), str(), str()
		if p == nil {
			return dst, bad
		}
		dst = append(dst, e)
	}
	return dst, nil
}

// appendKeys opens an entity's JSON with its keys: `{"PartitionKey":…,"RowKey":…`.
func appendKeys(b []byte, pk, rk string) []byte {
	b = append(b, `{"PartitionKey":`...)
	b = appendJSONString(b, pk)
	b = append(b, `,"RowKey":`...)
	return appendJSONString(b, rk)
}
