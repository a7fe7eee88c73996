package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// Entry is one record in a posting: where its Events row is and what
// stats, filters and detections need without reading it. Its strings are
// CapValue'd: a long User-Agent or object name is its first bytes and a
// hash (the Events row keeps the whole text).
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

// Limits of a posting row. Every one is far from Table Storage's (1 MiB an
// entity), so that no logged value can make storage refuse a row: a
// caller who sends thousands of requests, each with its own 4,000-character
// User-Agent, fills more rows, never a larger one (HAZARDS 11, 12).
const (
	// MaxEntryValue bounds each string of an entry (CapValue).
	MaxEntryValue = 256
	// maxPostingRaw bounds a row's string table and entries before
	// compression; DEFLATE cannot grow them by more than a few bytes per
	// 64 KiB block, so the column stays near 64 KiB (two binary parts).
	maxPostingRaw = 64 << 10
	// maxEntriesPerRow bounds the entries of one row a reader decodes (and
	// so what it allocates for one): N is checked against it first. Rows
	// written before maxEntriesWritten hold up to this many.
	maxEntriesPerRow = 20000
	// maxEntriesWritten bounds the entries of a row written now: a row's
	// entries are consecutive in time (T0…T1), so the fewer a row holds
	// the less a page reads of a key flooded within one hour — a page
	// decodes the rows whose span meets what it needs, and a thousand
	// entries is ~10–250 KB before compression.
	maxEntriesWritten = 1000
	// maxPostingInflate is what a reader inflates of one row at most:
	// rows written before maxPostingRaw (up to maxEntriesPerRow entries
	// with their strings) took up to a few MiB.
	maxPostingInflate = 4 << 20
)

// CapValue is s when it is at most MaxEntryValue bytes; else its first
// bytes (cut at a character), "~" and 32 hex digits of the SHA-256 of its
// lower-cased form, MaxEntryValue bytes at most. Distinct values stay
// distinct (to the hash), values differing only in case cap alike but for
// their prefix, so case-insensitive comparison of capped values works.
// The same input always gives the same output.
func CapValue(s string) string {
	if len(s) <= MaxEntryValue {
		return s
	}
	sum := sha256.Sum256([]byte(strings.ToLower(s)))
	return cutString(s, MaxEntryValue-33) + "~" + hex.EncodeToString(sum[:16])
}

// postingKey groups the entries of one posting row series: one lookup
// key, one record day and hour, one blob lineage.
type postingKey struct {
	kind, key, day string
	hour           int
	source         string
}

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
	t := rec.Time.UTC()
	day, hour := t.Format(DayLayout), t.Hour()
	e := Entry{
		InvTicks: InvTicks(rec.Time), Offset: rec.Offset, Vault: CapValue(rec.Vault), Op: CapValue(rec.OperationName),
		Status: rec.Status, Caller: CapValue(CallerKey(rec)), IP: CapValue(rec.CallerIPAddress),
		Object: CapValue(rec.ObjectName), Client: CapValue(rec.ClientInfo),
	}
	add := func(kind, key string) {
		k := postingKey{kind, PostingKeyPart(key), day, hour, sourceID}
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

// InvTicks is t as a RowKey's inverted ticks (and an Entry's InvTicks):
// newer times are smaller.
func InvTicks(t time.Time) int64 { return maxTicks - Ticks(t) }

// SpanText is inverted ticks as a posting row's T0 and T1 hold them: 19
// digits, so that they compare as strings in a filter.
func SpanText(inv int64) string { return fmt.Sprintf("%019d", inv) }

// PostingKeyPart is the key part of a lookup value in Postings RowKeys:
// EncodeKeyPart of its CapValue, so that a value and its capped form (as
// stats and findings name a value over MaxEntryValue bytes) find the same
// rows.
func PostingKeyPart(v string) string { return EncodeKeyPart(CapValue(v)) }

// PostingHourPrefix is the start of the RowKeys of key's posting rows of
// one record hour (0–23) of their partition's day: "<key>|h<23-hour>|".
// The hour is inverted so that a key's rows sort newest hour first, and a
// reader that has the newest entries it needs can stop.
func PostingHourPrefix(key string, hour int) string {
	inv := 23 - hour
	return key + "|h" + string([]byte{byte('0' + inv/10), byte('0' + inv%10)}) + "|"
}

// PostingLegacyEnd bounds, from above, the RowKeys of key's posting rows
// written before rows carried their hour ("<key>|<lineage>|<chunk>",
// lineages being hex): every such row sorts in [key+"|", PostingLegacyEnd),
// before any row with an hour.
func PostingLegacyEnd(key string) string { return key + "|g" }

// PostingRK is a Postings RowKey taken apart.
type PostingRK struct {
	Key    string // the encoded lookup key
	Hour   int    // record hour of every entry; -1 for a row written before rows carried their hour
	Source string // the blob lineage
	Chunk  int64  // the blob offset of the ingest chunk
	Part   int    // 0, then 1, 2 … for the entries that did not fit the first row
}

// ParsePostingRK takes a Postings RowKey apart: "<key>|h<23-hour>|<lineage>|<chunk>[-<part>]",
// or, for rows written before rows carried their hour, "<key>|<lineage>|<chunk>[-<part>]".
func ParsePostingRK(rk string) (PostingRK, bool) {
	parts := strings.Split(rk, "|")
	var r PostingRK
	switch {
	case len(parts) == 3:
		r.Key, r.Hour, r.Source = parts[0], -1, parts[1]
	case len(parts) == 4 && len(parts[1]) == 3 && parts[1][0] == 'h':
		inv, err := strconv.Atoi(parts[1][1:])
		if err != nil || inv < 0 || inv > 23 {
			return PostingRK{}, false
		}
		r.Key, r.Hour, r.Source = parts[0], 23-inv, parts[2]
	default:
		return PostingRK{}, false
	}
	chunk, part, cut := strings.Cut(parts[len(parts)-1], "-")
	c, err := strconv.ParseInt(chunk, 16, 64)
	if err != nil || c < 0 {
		return PostingRK{}, false
	}
	r.Chunk = c
	if cut {
		if r.Part, err = strconv.Atoi(part); err != nil || r.Part < 1 {
			return PostingRK{}, false
		}
	}
	return r, true
}

// Rows appends the posting rows of the entries added since the last call,
// for the chunk starting at blob offset chunkStart, and forgets them. The
// keys depend only on the lineage, the record hour, the chunk's start and
// the lookup key, so reading the same chunk again writes the same rows.
// Entries that do not fit one row (maxEntriesWritten, maxPostingRaw) go on
// in rows "-1", "-2" … of the same chunk, older entries in later parts.
// Each row says the span of its entries: T0 and T1, the inverted ticks of
// its newest and oldest (19 digits, so that they compare as strings),
// which a reader's filter and order use to skip rows.
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
		if a.key != b.key {
			return a.key < b.key
		}
		if a.hour != b.hour {
			return a.hour > b.hour
		}
		return a.source < b.source
	})
	var enc postingEncoder
	for _, k := range keys {
		es := p.m[k]
		sort.Slice(es, func(i, j int) bool {
			if es[i].InvTicks != es[j].InvTicks {
				return es[i].InvTicks < es[j].InvTicks
			}
			return es[i].Offset < es[j].Offset
		})
		pk := k.kind + "|" + k.day
		base := fmt.Sprintf("%s%s|%012x", PostingHourPrefix(k.key, k.hour), k.source, chunkStart)
		for part := 0; len(es) > 0; part++ {
			n := enc.fill(es)
			rk := base
			if part > 0 {
				rk += "-" + strconv.Itoa(part)
			}
			payload := enc.finish()
			b := make([]byte, 0, 96+len(pk)+len(rk)+len(payload)*4/3)
			b = appendKeys(b, pk, rk)
			b = append(b, `,"V":`...)
			b = strconv.AppendInt(b, Layout, 10)
			b = append(b, `,"N":`...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, `,"T0":"`...)
			b = append(b, SpanText(es[0].InvTicks)...)
			b = append(b, `","T1":"`...)
			b = append(b, SpanText(es[n-1].InvTicks)...)
			b = append(b, '"')
			b = appendBinary(b, PropPostings, payload)
			b = append(b, '}')
			dst = append(dst, Entity{Table: TablePostings, PK: pk, RK: rk, Body: b})
			es = es[n:]
		}
	}
	clear(p.m)
	return dst
}

// postingEncoder builds one posting row at a time: a string table and,
// newest first, one entry per record as varints (inverted ticks and offset
// as deltas from the previous entry, the rest as string indices), the
// whole DEFLATEd with the preset dictionary. Its buffers are reused.
type postingEncoder struct {
	idx        map[string]uint64
	strs       []string
	headBytes  int // the string table's encoded size
	body, head []byte
	n          int
}

func (pe *postingEncoder) reset() {
	if pe.idx == nil {
		pe.idx = map[string]uint64{}
	}
	clear(pe.idx)
	pe.idx[""] = 0
	pe.strs = append(pe.strs[:0], "")
	pe.headBytes, pe.body, pe.n = 0, pe.body[:0], 0
}

// fill encodes the first entries of es (sorted newest first) into a new
// row, as many as fit, at least one, and says how many.
func (pe *postingEncoder) fill(es []Entry) int {
	pe.reset()
	for i := range es {
		if pe.n == maxEntriesWritten {
			break
		}
		// What this entry adds: its varints (at most 3×10 + 6×10 bytes)
		// and the strings the table does not hold yet.
		grow := 90
		for _, s := range es[i].strings() {
			if _, ok := pe.idx[s]; !ok {
				grow += len(s) + binary.MaxVarintLen64
			}
		}
		if pe.n > 0 && len(pe.body)+pe.headBytes+grow > maxPostingRaw {
			break
		}
		pe.add(es, i)
	}
	return pe.n
}

// add encodes es[i], the row's entry pe.n; es[i-1] is the entry before it
// in the row when pe.n > 0.
func (pe *postingEncoder) add(es []Entry, i int) {
	e := &es[i]
	var prevT, prevO int64
	if pe.n > 0 {
		prevT, prevO = es[i-1].InvTicks, es[i-1].Offset
	}
	pe.body = binary.AppendUvarint(pe.body, uint64(e.InvTicks-prevT))
	pe.body = binary.AppendVarint(pe.body, e.Offset-prevO)
	pe.body = binary.AppendVarint(pe.body, int64(e.Status))
	for _, s := range e.strings() {
		j, ok := pe.idx[s]
		if !ok {
			j = uint64(len(pe.strs))
			pe.idx[s] = j
			pe.strs = append(pe.strs, s)
			pe.headBytes += len(s) + uvarintLen(uint64(len(s)))
		}
		pe.body = binary.AppendUvarint(pe.body, j)
	}
	pe.n++
}

// strings are e's strings in the order a row stores their indices.
func (e *Entry) strings() [6]string {
	return [...]string{e.Vault, e.Op, e.Caller, e.IP, e.Object, e.Client}
}

// finish returns the row's P column.
func (pe *postingEncoder) finish() []byte {
	head := binary.AppendUvarint(pe.head[:0], uint64(len(pe.strs)-1))
	for _, s := range pe.strs[1:] {
		head = binary.AppendUvarint(head, uint64(len(s)))
		head = append(head, s...)
	}
	pe.head = head
	count := binary.AppendUvarint(nil, uint64(pe.n))
	var out bytes.Buffer
	deflate(&out, head, count, pe.body)
	return out.Bytes()
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// EncodePosting is the value of P for es (sorted newest first), all in one
// column whatever its size: for tests and tools. Rows uses the same format.
func EncodePosting(es []Entry) []byte {
	var pe postingEncoder
	pe.reset()
	for i := range es {
		pe.add(es, i)
	}
	return pe.finish()
}

var errCorruptPosting = errors.New("index: corrupt posting")

// DecodePosting undoes EncodePosting, appending to dst. want is the
// entries the row says it holds (its N; -1 when unknown, for tests): a
// column that declares another count, more than maxEntriesPerRow, or
// inflates past maxPostingInflate is refused before anything is allocated
// for it. It fails rather than returns part of a row.
func DecodePosting(dst []Entry, b []byte, want int) ([]Entry, error) {
	if want > maxEntriesPerRow {
		return dst, fmt.Errorf("%w: %d entries declared, at most %d", errCorruptPosting, want, maxEntriesPerRow)
	}
	p, err := inflate(b, maxPostingInflate)
	if err != nil {
		return dst, err
	}
	next := func() uint64 {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			p = nil
			return 0
		}
		p = p[k:]
		return v
	}
	// Every string takes at least its length byte: a count above what is
	// left is a lie. And every string is one an entry names (at most 6 an
	// entry): a table of more, empty strings say, would cost 16 bytes of
	// header for each byte of the row.
	nstr := next()
	if p == nil || nstr > uint64(len(p)) || nstr > 6*maxEntriesPerRow || want >= 0 && nstr > 6*uint64(want) {
		return dst, errCorruptPosting
	}
	strs := make([]string, 1, nstr+1)
	for range nstr {
		n := next()
		if p == nil || n > uint64(len(p)) {
			return dst, errCorruptPosting
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
	// An entry takes at least 9 bytes (3 varints, 6 indices).
	if p == nil || n > maxEntriesPerRow || n > uint64(len(p))/9 || want >= 0 && n != uint64(want) {
		return dst, fmt.Errorf("%w: %d entries", errCorruptPosting, n)
	}
	dst = growEntries(dst, int(n))
	var t, o int64
	for range n {
		if p == nil {
			return dst, errCorruptPosting
		}
		t += int64(next())
		d, k := binary.Varint(p)
		if k <= 0 {
			return dst, errCorruptPosting
		}
		p = p[k:]
		o += d
		st, k := binary.Varint(p)
		if k <= 0 {
			return dst, errCorruptPosting
		}
		p = p[k:]
		e := Entry{InvTicks: t, Offset: o, Status: int(st)}
		e.Vault, e.Op, e.Caller, e.IP, e.Object, e.Client = str(), str(), str(), str(), str(), str()
		if p == nil {
			return dst, errCorruptPosting
		}
		dst = append(dst, e)
	}
	return dst, nil
}

func growEntries(dst []Entry, n int) []Entry {
	if cap(dst)-len(dst) < n {
		dst = append(make([]Entry, 0, len(dst)+n), dst...)
	}
	return dst
}

// PostingRow is a Postings row as Table Storage returns it.
type PostingRow struct {
	RowKey     string `json:"RowKey"`
	V          *int   `json:"V"`
	N          *int   `json:"N"`
	T0, T1     string // the span of the entries, inverted ticks; "" on rows written before
	P          []byte `json:"P"`
	P1, P2, P3 []byte
	P4, P5, P6 []byte
	P7, P8, P9 []byte
	P10, P11   []byte
	P12, P13   []byte
	P14, P15   []byte

	// Parsed is RowKey taken apart (ReadPostingRow fills it).
	Parsed PostingRK `json:"-"`
}

// ErrOldLayoutRow is a row without V, or of another layout than Layout.
var ErrOldLayoutRow = errors.New("index: row of another layout")

// ReadPostingRow reads a Postings entity (JSON as the service returns it)
// into r without decoding its entries (Entries does): a reader can look at
// r.Parsed first and skip the row. An entity of another layout is
// ErrOldLayoutRow.
func ReadPostingRow(entity []byte, r *PostingRow) error {
	*r = PostingRow{}
	if err := json.Unmarshal(entity, r); err != nil {
		return fmt.Errorf("index: unreadable posting row: %w", err)
	}
	if r.V == nil || *r.V != Layout {
		return ErrOldLayoutRow
	}
	rk, ok := ParsePostingRK(r.RowKey)
	if !ok {
		return fmt.Errorf("index: posting row %q: not a posting RowKey", r.RowKey)
	}
	r.Parsed = rk
	return nil
}

// Entries decodes r's entries, appended to dst with Source set. A corrupt
// or oversized column is an error naming the row, and nothing is
// appended. At most 16 parts are read (an entity holds 1 MiB, 16 parts of
// 64,000 bytes): a column continued past them does not inflate.
func (r *PostingRow) Entries(dst []Entry) ([]Entry, error) {
	want := -1
	if r.N != nil {
		want = *r.N
	}
	start := len(dst)
	dst, err := DecodePosting(dst, JoinParts(r.P, r.P1, r.P2, r.P3, r.P4, r.P5, r.P6, r.P7, r.P8, r.P9, r.P10, r.P11, r.P12, r.P13, r.P14, r.P15), want)
	if err != nil {
		return dst[:start], fmt.Errorf("index: posting row %q: %w", r.RowKey, err)
	}
	for i := start; i < len(dst); i++ {
		dst[i].Source = r.Parsed.Source
	}
	return dst, nil
}

// DecodePostingRow is ReadPostingRow and Entries.
func DecodePostingRow(dst []Entry, entity []byte, r *PostingRow) ([]Entry, error) {
	if err := ReadPostingRow(entity, r); err != nil {
		return dst, err
	}
	return r.Entries(dst)
}

// JoinParts is a binary column continued past 64 000 bytes (R, R1, R2 …
// and P, P1 …): first and its continuations up to the first empty one. A
// column that fits one property is returned without a copy.
func JoinParts(first []byte, rest ...[]byte) []byte {
	if len(rest) == 0 || len(rest[0]) == 0 {
		return first
	}
	b := append([]byte(nil), first...)
	for _, p := range rest {
		if len(p) == 0 {
			break
		}
		b = append(b, p...)
	}
	return b
}
