package index

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// randomText is n characters an attacker would choose: random, so that
// nothing compresses.
func randomText(rnd *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/;()._-"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rnd.IntN(len(alphabet))]
	}
	return string(b)
}

// attackRecords is one caller reading one secret n times in one hour,
// from one IP, each request with its own random User-Agent of 300–4,000
// characters (issue 15, item 1).
func attackRecords(n int) []parse.Record {
	rnd := rand.New(rand.NewPCG(15, 1))
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	out := make([]parse.Record, n)
	for i := range out {
		r := &out[i]
		r.Time = t0.Add(time.Duration(i) * 500 * time.Millisecond)
		r.Vault, r.OperationName, r.Status = "kv1", "SecretGet", 200
		r.Identity.ObjectID = "0e4a0f84-4b1c-4c8e-8d4e-1a2b3c4d5e6f"
		r.CallerIPAddress, r.ObjectName = "203.0.113.7", "db-password"
		r.ClientInfo = randomText(rnd, 300+rnd.IntN(3701))
		r.Offset = int64(i) * 5000
	}
	return out
}

// Whatever callers log, every posting row stays far inside Table
// Storage's limits (1 MiB an entity, 64 KiB a property), every entry is
// in exactly one row, and its strings are capped.
func TestPostingRowsStayInsideLimits(t *testing.T) {
	recs := attackRecords(6000)
	var p Postings
	for i := range recs {
		p.Add(&recs[i], "0123456789abcdef")
	}
	rows := p.Rows(nil, 0)
	seen := map[string]int{} // kind → entries
	for _, r := range rows {
		if size := len(r.Body); size > maxEntityBytes/4 {
			t.Errorf("row %s is %d bytes", r.RK, size)
		}
		var props map[string]any
		if err := json.Unmarshal(r.Body, &props); err != nil {
			t.Fatal(err)
		}
		if len(props) > 252 {
			t.Errorf("row %s has %d properties", r.RK, len(props))
		}
		for k, v := range props {
			if s, ok := v.(string); ok && len(s) > 64000*4/3+4 {
				t.Errorf("row %s property %s is %d bytes", r.RK, k, len(s))
			}
		}
		var pr PostingRow
		es, err := DecodePostingRow(nil, r.Body, &pr)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Parsed.Hour != 10 || pr.Parsed.Source != "0123456789abcdef" {
			t.Errorf("row %s parsed as %+v", r.RK, pr.Parsed)
		}
		for _, e := range es {
			for _, s := range []string{e.Vault, e.Op, e.Caller, e.IP, e.Object, e.Client} {
				if len(s) > MaxEntryValue || !utf8.ValidString(s) {
					t.Fatalf("entry value of %d bytes: %.40q", len(s), s)
				}
			}
		}
		kind, _, _ := strings.Cut(r.PK, "|")
		seen[kind] += len(es)
	}
	for _, kind := range []string{KindCaller, KindIP, KindObject} {
		if seen[kind] != 6000 {
			t.Errorf("%s postings hold %d entries, want 6000", kind, seen[kind])
		}
	}
	t.Logf("%d rows for 6000 records × 3 keys", len(rows))
}

func TestCapValue(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes
	for _, tt := range []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"short", "db-password"},
		{"at the bound", strings.Repeat("x", MaxEntryValue)},
		{"over", strings.Repeat("x", MaxEntryValue+1)},
		{"multibyte", long},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := CapValue(tt.in)
			if len(tt.in) <= MaxEntryValue && got != tt.in {
				t.Fatalf("%q changed to %q", tt.in, got)
			}
			if len(got) > MaxEntryValue || !utf8.ValidString(got) {
				t.Fatalf("%d bytes, valid %v", len(got), utf8.ValidString(got))
			}
			if CapValue(tt.in) != got {
				t.Fatal("not deterministic")
			}
		})
	}
	a, b := strings.Repeat("a", 400)+"1", strings.Repeat("a", 400)+"2"
	if CapValue(a) == CapValue(b) {
		t.Error("distinct long values capped alike")
	}
	if !strings.EqualFold(CapValue(strings.ToUpper(a)), CapValue(a)) {
		t.Error("values differing in case do not compare equal, folded, once capped")
	}
}

// bomb is a DEFLATE stream (with the preset dictionary) of n zero bytes:
// about n/1000 bytes that inflate to n.
func bomb(t testing.TB, prefix []byte, n int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := flate.NewWriterDict(&out, flate.BestCompression, RecordDict())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(prefix)
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		w.Write(zero[:k])
		n -= k
	}
	w.Close()
	return out.Bytes()
}

// heapDuring returns what fn allocated.
func heapDuring(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// Sizes read back from a row are claims: a column that inflates past what
// kvaudit can have written, or declares more entries than it holds, fails
// before it costs memory — never truncated, never decoded (issue 15,
// item 3).
func TestDecodersRefuseBombs(t *testing.T) {
	// A string table claiming 7 million strings of 9 zero bytes: 63 MB
	// from a ~61 KB column.
	var head []byte
	head = binary.AppendUvarint(head, 7_000_000)
	postingBomb := bomb(t, head, 63<<20)
	t.Logf("posting bomb: %d bytes compressed", len(postingBomb))
	// A record column claiming 64 MiB.
	var rhead []byte
	rhead = binary.AppendUvarint(rhead, 64<<20)
	recordBomb := bomb(t, rhead, 64<<20)

	row := func(n int, payload []byte) []byte {
		b := appendKeys(nil, "c|20261120", "x|h13|0123456789abcdef|000000000000")
		b = append(b, `,"V":2,"N":`...)
		b = fmt.Appendf(b, "%d", n)
		b = appendBinary(b, PropPostings, payload)
		return append(b, '}')
	}
	small := EncodePosting([]Entry{{InvTicks: 1, Offset: 2, Vault: "kv", Op: "SecretGet", Status: 200}})
	for _, tt := range []struct {
		name string
		row  []byte
		says string
	}{
		{"inflates past the limit", row(100, postingBomb), "inflates past its limit"},
		{"declares more entries than a row holds", row(7_000_000, small), "entries declared"},
		{"declares other entries than it holds", row(2, small), "1 entries"},
		{"no count", []byte(`{"PartitionKey":"c|20261120","RowKey":"x|h13|0123456789abcdef|000000000000","V":2,"P@odata.type":"Edm.Binary","P":"` +
			base64.StdEncoding.EncodeToString(postingBomb) + `"}`), "inflates past its limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := heapDuring(func() {
				var pr PostingRow
				_, err = DecodePostingRow(nil, tt.row, &pr)
			})
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("decoded: %v, want an error saying %q", err, tt.says)
			}
			if alloc > 24<<20 { // the bombs claim 63 and 64 MiB
				t.Errorf("allocated %d bytes refusing it", alloc)
			}
			t.Logf("refused after allocating %d KiB: %v", alloc>>10, err)
		})
	}
	t.Run("record", func(t *testing.T) {
		var err error
		alloc := heapDuring(func() { _, _, err = DecodeRecord(recordBomb) })
		if !errors.Is(err, errTooLarge) {
			t.Fatalf("DecodeRecord: %v, want errTooLarge", err)
		}
		if alloc > 24<<20 {
			t.Errorf("allocated %d bytes refusing it", alloc)
		}
		t.Logf("refused after allocating %d KiB", alloc>>10)
	})
}

func TestParsePostingRK(t *testing.T) {
	for _, tt := range []struct {
		rk   string
		want PostingRK
		ok   bool
	}{
		{"alice|h00|0123456789abcdef|000000400000", PostingRK{"alice", 23, "0123456789abcdef", 0x400000, 0}, true},
		{"alice|h23|0123456789abcdef|000000400000-2", PostingRK{"alice", 0, "0123456789abcdef", 0x400000, 2}, true},
		{"alice|0123456789abcdef|000000000000", PostingRK{"alice", -1, "0123456789abcdef", 0, 0}, true},
		{"alice|h24|0123456789abcdef|000000000000", PostingRK{}, false},
		{"alice|hxx|0123456789abcdef|000000000000", PostingRK{}, false},
		{"alice|0123456789abcdef|zz", PostingRK{}, false},
		{"alice|0123456789abcdef|000000000000-0", PostingRK{}, false},
		{"alice", PostingRK{}, false},
	} {
		got, ok := ParsePostingRK(tt.rk)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParsePostingRK(%q) = %+v, %v; want %+v, %v", tt.rk, got, ok, tt.want, tt.ok)
		}
	}
	// Hours sort newest first, and every row written before rows carried
	// their hour sorts before them.
	prev := PostingLegacyEnd("alice")
	for h := 23; h >= 0; h-- {
		p := PostingHourPrefix("alice", h)
		if p <= prev {
			t.Fatalf("hour %d's prefix %q sorts before %q", h, p, prev)
		}
		prev = p
	}
	if "alice|ffffffffffffffff|000000000000" >= PostingLegacyEnd("alice") {
		t.Error("a lineage sorts past PostingLegacyEnd")
	}
}

// Noise from failed and unauthenticated requests — random object names
// at the top of an hour, before any real request — cannot push the keys
// of successful requests into ~other (issue 15, item 4).
func TestCountsNoiseCannotCrowdOut(t *testing.T) {
	rnd := rand.New(rand.NewPCG(4, 4))
	var c Counts
	key := HourKey{Vault: "kv1", Hour: "2026112010"}
	for range 3000 { // unauthenticated: no identity, 401
		c.Add(Tally{Key: key, Op: "SecretGet", Status: 401, Caller: "-", IP: fmt.Sprintf("198.51.%d.%d", rnd.IntN(256), rnd.IntN(256)),
			Object: CapValue(strings.ToLower(randomText(rnd, 20+rnd.IntN(600))))})
	}
	for range 3000 { // an insider spraying 403s
		c.Add(Tally{Key: key, Op: "SecretGet", Status: 403, Caller: "insider", IP: "192.0.2.1", Object: CapValue(randomText(rnd, 40))})
	}
	real := map[string]int64{}
	for i := range 300 {
		obj := fmt.Sprintf("secret-%03d", i%30)
		real[obj]++
		c.Add(Tally{Key: key, Op: "SecretGet", Status: 200, Caller: fmt.Sprintf("user-%d", i%7), IP: "10.0.0.1", Object: obj})
	}
	h := c.Hours[key]
	if h.Total != 6300 {
		t.Fatalf("total %d", h.Total)
	}
	for obj, n := range real {
		if got := h.Dims[DimObject+ClassOK][obj]; got != n {
			t.Errorf("object %s counted %d, want %d", obj, got, n)
		}
	}
	if h.Dims[DimObject+ClassOK][OtherKey] != 0 || h.Dims[DimCaller+ClassOK][OtherKey] != 0 {
		t.Error("successful requests overflowed")
	}
	for _, d := range []string{DimObject + ClassAnonymous, DimObject + ClassRefused, DimIP + ClassAnonymous} {
		if h.Dims[d][OtherKey] == 0 {
			t.Errorf("%s: no overflow from 3000 distinct keys", d)
		}
		var sum int64
		for _, n := range h.Dims[d] {
			sum += n
		}
		if sum != 3000 {
			t.Errorf("%s sums to %d, want 3000", d, sum)
		}
	}
}

// A blob's counts are committed in one transaction with its checkpoint:
// even when every hour a chunk can touch is at its bounds, with the
// longest keys, they fit (under 100 entities, 3 MiB).
func TestCountsAtTheirBoundsFitOneTransaction(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	var c Counts
	hour := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for d := -BlobHourMargin; d <= BlobHourMargin; d += time.Hour {
		key := HourKey{Vault: "kv1", Hour: hour.Add(d).Format(HourLayout)}
		for i := range 5000 {
			long := func() string { return CapValue(randomText(rnd, 300) + "é\"\\") }
			status := []int{200, 403, 401}[i%3]
			caller := long()
			if status == 401 {
				caller = "-"
			}
			c.Add(Tally{Key: key, Op: long(), Status: status*1000 + i, Caller: caller, IP: long(), Object: long()})
		}
	}
	rows, err := CountsEntities(TableBlobs, "kv1|2026112010", "0123456789abcdef", &c)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, r := range rows {
		size += len(r.Body)
		if len(r.Body) > maxEntityBytes {
			t.Errorf("counts row %s is %d bytes", r.RK, len(r.Body))
		}
	}
	if len(rows) >= 100 || size > 3<<20 {
		t.Fatalf("%d rows, %d bytes: more than the checkpoint's transaction holds", len(rows), size)
	}
	t.Logf("7 hours at their bounds: %d rows, %d KiB", len(rows), size>>10)
	// And they read back as written.
	var back Counts
	for _, r := range rows {
		var props map[string]any
		if err := json.Unmarshal(r.Body, &props); err != nil {
			t.Fatal(err)
		}
		if err := back.AddRow(props); err != nil {
			t.Fatal(err)
		}
	}
	for k, h := range c.Hours {
		for d, m := range h.Dims {
			for kk, n := range m {
				if back.Hours[k].Dims[d][kk] != n {
					t.Fatalf("%v %s %q: read %d, wrote %d", k, d, kk, back.Hours[k].Dims[d][kk], n)
				}
			}
		}
	}
}

// FuzzDecodePosting: whatever a row holds, decoding returns entries or an
// error, within its bounds, and never panics.
func FuzzDecodePosting(f *testing.F) {
	f.Add(EncodePosting([]Entry{{InvTicks: 5, Offset: 7, Vault: "kv", Op: "SecretGet", Status: 200, Caller: "c", IP: "10.0.0.1", Object: "o", Client: "x"}}), 1)
	f.Add([]byte("garbage"), -1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		es, err := DecodePosting(nil, b, n)
		if err == nil && n >= 0 && len(es) != n {
			t.Fatalf("%d entries, declared %d", len(es), n)
		}
		if len(es) > maxEntriesPerRow {
			t.Fatalf("%d entries", len(es))
		}
	})
}
