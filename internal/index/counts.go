package index

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// Aggregate dimensions counted per vault × UTC hour of record time.
// Caller, IP and object are counted apart for each request class (the
// dimension's name with the class's suffix: "ip", "ip!r", "ip!a"), so that
// keys of failed or unauthenticated requests — which anyone who can reach
// a vault chooses at will — can never push the keys of successful
// requests out of an hour's counts (HAZARDS 11).
const (
	DimOperation = "operation"
	DimStatus    = "status"
	DimCaller    = "caller" // objectId, else upn, else appId, else "-"
	DimIP        = "ip"
	DimObject    = "object"
)

// Request classes: the suffix of a class's dimensions.
const (
	// ClassOK: requests answered with a status below 400 (or none logged).
	ClassOK = ""
	// ClassRefused: 4xx and 5xx answers to a caller with an identity.
	ClassRefused = "!r"
	// ClassAnonymous: 4xx and 5xx answers to a request without one —
	// unauthenticated requests, which anyone can send.
	ClassAnonymous = "!a"
)

// Classes lists the request classes, ClassOK first.
var Classes = []string{ClassOK, ClassRefused, ClassAnonymous}

// ClassOf is the class of a request of status by caller (CallerKey).
func ClassOf(status int, caller string) string {
	switch {
	case status < 400:
		return ClassOK
	case caller == "-" || caller == "":
		return ClassAnonymous
	}
	return ClassRefused
}

// ClassDims are the stored dimensions of dim: dim itself for DimOperation
// and DimStatus, one per class for the others.
func ClassDims(dim string) []string {
	switch dim {
	case DimCaller, DimIP, DimObject:
		return []string{dim + ClassOK, dim + ClassRefused, dim + ClassAnonymous}
	}
	return []string{dim}
}

// SplitDim is the dimension and class of a stored dimension name.
func SplitDim(stored string) (dim, class string) {
	if i := strings.IndexByte(stored, '!'); i >= 0 {
		return stored[:i], stored[i:]
	}
	return stored, ClassOK
}

// OtherKeyOf is how answers name the keys of a class that its hours'
// bounds did not keep (stored as OtherKey in the class's dimension):
// "~other" for successful requests, "~other:refused" and
// "~other:unauthenticated" for the others.
func OtherKeyOf(class string) string {
	switch class {
	case ClassRefused:
		return OtherKey + ":refused"
	case ClassAnonymous:
		return OtherKey + ":unauthenticated"
	}
	return OtherKey
}

// HourLayout is the hour part of aggregate keys.
const HourLayout = "2006010215"

// BlobHourMargin is how far from its blob's hour a record may be and still
// be counted by stats from the blob's partition: Azure Monitor appends late
// records to a later hour's blob, and the previous hour's blob can still
// grow after the hour has passed (HAZARDS 4). Stats reads the blob
// partitions of a vault this far either side of its window; ingest counts a
// record farther away (or of another vault, or in a blob whose path names
// no vault and hour) in a row of its own, where stats reads it.
const BlobHourMargin = 3 * time.Hour

// Counts are the aggregates of some records: per vault and hour of record
// time, a total and a count per key of each dimension. Counts are written
// beside a blob's checkpoint, in the same transaction, so a re-read of the
// blob can never count a record twice (HAZARDS 1).
type Counts struct {
	Hours map[HourKey]*HourCounts
}

// HourKey names one vault × hour.
type HourKey struct {
	Vault string
	Hour  string // HourLayout
}

// HourCounts are the counts of one vault × hour.
type HourCounts struct {
	Total int64
	// Dims are the counts by stored dimension (DimOperation, DimStatus,
	// and ClassDims of the others) and key.
	Dims map[string]map[string]int64
	// bytes is each stored dimension's size as its bounds count it.
	bytes map[string]int
}

// CallerKey is the caller a record is counted under.
func CallerKey(rec *parse.Record) string {
	switch {
	case rec.Identity.ObjectID != "":
		return strings.ToLower(rec.Identity.ObjectID)
	case rec.Identity.UPN != "":
		return strings.ToLower(rec.Identity.UPN)
	case rec.Identity.AppID != "":
		return strings.ToLower(rec.Identity.AppID)
	}
	return "-"
}

// Tally is what a record contributes to Counts, kept small so that a chunk
// of records can be recounted from any offset after a lost race. Its keys
// are CapValue'd.
type Tally struct {
	Key    HourKey
	Op     string
	Status int
	Caller string
	IP     string
	Object string
}

// TallyOf returns rec's contribution.
func TallyOf(rec *parse.Record) Tally {
	return Tally{
		Key:    HourKey{Vault: rec.Vault, Hour: rec.Time.UTC().Format(HourLayout)},
		Op:     CapValue(rec.OperationName),
		Status: rec.Status,
		Caller: CapValue(CallerKey(rec)),
		IP:     CapValue(rec.CallerIPAddress),
		Object: CapValue(strings.ToLower(rec.ObjectName)),
	}
}

// Bounds of one hour's counts. Each stored dimension keeps at most
// MaxKeysPerDim distinct keys and, counting each key's bytes and
// tripleOverhead, at most its byte bound; later keys count under
// OtherKeyOf(class). Totals stay exact. The byte bounds keep a blob's
// counts inside the one transaction that commits them with its checkpoint
// (4 MiB) even when every hour a chunk can touch (its blob's hour
// ± BlobHourMargin: 7) is at its bounds: 7 × (32 + 1 + 3×64 + 3×24 + 2×24)
// KiB, with JSON's escaping, stays under 3 MiB. Successful requests get
// the larger bound.
const (
	MaxKeysPerDim = 1000
	OtherKey      = "~other"

	maxDimBytesOK    = 64 << 10
	maxDimBytesOther = 24 << 10
	maxDimBytesOp    = 32 << 10
	tripleOverhead   = 32 // {"d":…,"k":…,"n":…} around a key
)

func dimBytesBound(stored string) int {
	switch dim, class := SplitDim(stored); {
	case dim == DimOperation || dim == DimStatus:
		return maxDimBytesOp
	case class == ClassOK:
		return maxDimBytesOK
	}
	return maxDimBytesOther
}

// Only returns the counts of the given hours (all when hours is nil),
// sharing their maps: for writing, not for changing.
func (c *Counts) Only(hours map[HourKey]bool) *Counts {
	if hours == nil {
		return c
	}
	out := &Counts{Hours: map[HourKey]*HourCounts{}}
	for k := range hours {
		if h := c.Hours[k]; h != nil {
			out.Hours[k] = h
		}
	}
	return out
}

// Add counts t once.
func (c *Counts) Add(t Tally) {
	if c.Hours == nil {
		c.Hours = map[HourKey]*HourCounts{}
	}
	h := c.Hours[t.Key]
	if h == nil {
		h = &HourCounts{Dims: map[string]map[string]int64{}}
		c.Hours[t.Key] = h
	}
	h.Total++
	h.inc(DimOperation, t.Op)
	h.inc(DimStatus, strconv.Itoa(t.Status))
	class := ClassOf(t.Status, t.Caller)
	h.inc(DimCaller+class, t.Caller)
	h.inc(DimIP+class, t.IP)
	h.inc(DimObject+class, t.Object)
}

// inc counts key once in stored dimension dim, or under its class's other
// key when dim is at its bounds.
func (h *HourCounts) inc(dim, key string) {
	if key == "" {
		return
	}
	m := h.Dims[dim]
	if m == nil {
		m = map[string]int64{}
		h.Dims[dim] = m
	}
	if _, seen := m[key]; !seen {
		if h.bytes == nil {
			h.bytes = map[string]int{}
		}
		size := len(key) + tripleOverhead
		if len(m) >= MaxKeysPerDim || h.bytes[dim]+size > dimBytesBound(dim) {
			// Stored as OtherKey in every class (the dimension names the
			// class); readers name it with OtherKeyOf.
			key = OtherKey
			if _, seen := m[key]; !seen {
				h.bytes[dim] += len(key) + tripleOverhead
			}
		} else {
			h.bytes[dim] += size
		}
	}
	m[key]++
}

// Clone returns a deep copy.
func (c *Counts) Clone() *Counts {
	out := &Counts{Hours: map[HourKey]*HourCounts{}}
	for k, h := range c.Hours {
		nh := &HourCounts{Total: h.Total, Dims: map[string]map[string]int64{}, bytes: maps.Clone(h.bytes)}
		for d, m := range h.Dims {
			nm := make(map[string]int64, len(m))
			for kk, v := range m {
				nm[kk] = v
			}
			nh.Dims[d] = nm
		}
		out.Hours[k] = nh
	}
	return out
}

// countTriple is one (dimension, key, count) in a stored row.
type countTriple struct {
	D string `json:"d"`
	K string `json:"k"`
	N int64  `json:"n"`
}

// Row property layout of a counts row: Vault, Hour, Total (on part 0) and
// up to countChunksPerRow properties C0…Cn, each a JSON array of triples of
// at most countChunkChars characters (a string property's limit is 32 K
// UTF-16 units; an entity's 1 MiB).
const (
	countChunkChars   = 30000
	countChunksPerRow = 12
)

// CountsRowPrefix starts every counts RowKey of one blob lineage.
func CountsRowPrefix(sourceID string) string { return "a|" + sourceID + "|" }

// CountsEntities encodes c as rows of partition pk, RowKeys
// CountsRowPrefix(sourceID)+"<hour>|<vault>|<part>". Deterministic: the
// same counts give the same rows.
func CountsEntities(table, pk, sourceID string, c *Counts) ([]Entity, error) {
	keys := make([]HourKey, 0, len(c.Hours))
	for k := range c.Hours {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Hour != keys[j].Hour {
			return keys[i].Hour < keys[j].Hour
		}
		return keys[i].Vault < keys[j].Vault
	})
	var out []Entity
	for _, k := range keys {
		h := c.Hours[k]
		var triples []countTriple
		dims := make([]string, 0, len(h.Dims))
		for d := range h.Dims {
			dims = append(dims, d)
		}
		sort.Strings(dims)
		for _, d := range dims {
			ks := make([]string, 0, len(h.Dims[d]))
			for kk := range h.Dims[d] {
				ks = append(ks, kk)
			}
			sort.Strings(ks)
			for _, kk := range ks {
				triples = append(triples, countTriple{D: d, K: kk, N: h.Dims[d][kk]})
			}
		}
		chunks, err := chunkTriples(triples)
		if err != nil {
			return nil, err
		}
		for part := 0; part == 0 || part*countChunksPerRow < len(chunks); part++ {
			rk := fmt.Sprintf("%s%s|%s|%03d", CountsRowPrefix(sourceID), k.Hour, EncodeKeyPart(k.Vault), part)
			b := appendKeys(nil, pk, rk)
			b = append(b, `,"Vault":`...)
			b = appendJSONString(b, k.Vault)
			b = append(b, `,"Hour":`...)
			b = appendJSONString(b, k.Hour)
			b = append(b, `,"Part":`...)
			b = strconv.AppendInt(b, int64(part), 10)
			if part == 0 {
				b = append(b, `,"Total@odata.type":"Edm.Int64","Total":"`...)
				b = strconv.AppendInt(b, h.Total, 10)
				b = append(b, '"')
			}
			end := min((part+1)*countChunksPerRow, len(chunks))
			for i := part * countChunksPerRow; i < end; i++ {
				b = append(b, `,"C`...)
				b = strconv.AppendInt(b, int64(i-part*countChunksPerRow), 10)
				b = append(b, `":`...)
				b = appendJSONString(b, chunks[i])
			}
			b = append(b, '}')
			out = append(out, Entity{Table: table, PK: pk, RK: rk, Body: b})
		}
	}
	return out, nil
}

func chunkTriples(ts []countTriple) ([]string, error) {
	var chunks []string
	var cur []countTriple
	size := 2
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		chunks = append(chunks, string(b))
		cur, size = cur[:0], 2
		return nil
	}
	for _, t := range ts {
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		// Keys are cut so that one triple always fits a chunk.
		if utf16Len(string(b)) > countChunkChars/2 {
			t.K = truncate(strProp{value: t.K, units: utf16Len(t.K)}, countChunkChars/4).value
			b, _ = json.Marshal(t)
		}
		if size+utf16Len(string(b))+1 > countChunkChars {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		cur = append(cur, t)
		size += utf16Len(string(b)) + 1
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return chunks, nil
}

// AddRow adds one stored counts row (its properties, as the SDK returns
// them) to c. Reading every row written by CountsEntities for a lineage
// gives back the counts that were written.
func (c *Counts) AddRow(props map[string]any) error {
	vault, _ := props["Vault"].(string)
	hour, _ := props["Hour"].(string)
	if _, err := time.Parse(HourLayout, hour); err != nil {
		return fmt.Errorf("index: counts row with bad Hour %q", hour)
	}
	if c.Hours == nil {
		c.Hours = map[HourKey]*HourCounts{}
	}
	k := HourKey{Vault: vault, Hour: hour}
	h := c.Hours[k]
	if h == nil {
		h = &HourCounts{Dims: map[string]map[string]int64{}}
		c.Hours[k] = h
	}
	if v, ok := props["Total"]; ok {
		n, err := toInt64(v)
		if err != nil {
			return fmt.Errorf("index: counts row Total: %w", err)
		}
		h.Total += n
	}
	for i := 0; i < countChunksPerRow; i++ {
		s, ok := props["C"+strconv.Itoa(i)].(string)
		if !ok {
			break
		}
		var ts []countTriple
		if err := json.Unmarshal([]byte(s), &ts); err != nil {
			return fmt.Errorf("index: counts row C%d: %w", i, err)
		}
		for _, t := range ts {
			m := h.Dims[t.D]
			if m == nil {
				m = map[string]int64{}
				h.Dims[t.D] = m
			}
			if _, seen := m[t.K]; !seen {
				if h.bytes == nil {
					h.bytes = map[string]int{}
				}
				h.bytes[t.D] += len(t.K) + tripleOverhead
			}
			m[t.K] += t.N
		}
	}
	return nil
}

func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return strconv.ParseInt(x, 10, 64)
	case float64:
		return int64(x), nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case json.Number:
		return x.Int64()
	}
	return 0, fmt.Errorf("not a number: %T", v)
}
