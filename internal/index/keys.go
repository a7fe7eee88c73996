package index

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Table names, after the configured prefix.
const (
	TableEvents   = "Events"
	TablePostings = "Postings"
	TableBlobs    = "Blobs"
)

// Tables of layout 1, which held a full copy of every event per lookup
// key. Nothing writes them now; backfill drops them once it has rebuilt
// the index.
const (
	TableByCaller = "ByCaller"
	TableByIP     = "ByIp"
	TableByObject = "ByObject"
)

// DayLayout is the day part of a partition key: fixed width, sorts as time.
const DayLayout = "20060102"

// maxKeyPart bounds an encoded key part; Table Storage allows 1 KiB per key
// and a partition key holds a key part plus a day.
const maxKeyPart = 400

// EncodeKeyPart makes caller text safe as part of a PartitionKey or RowKey:
// lower-cased (lookups are case-insensitive), with '%', the characters Table
// Storage forbids ('/', '\', '#', '?'), our separator '|' and control
// characters percent-encoded, and anything longer than 400 bytes cut and
// suffixed with a hash so that distinct values stay distinct. The same input
// always gives the same output; "" stays "".
func EncodeKeyPart(s string) string {
	if utf8.ValidString(s) {
		// ToLower would turn invalid bytes into U+FFFD, merging distinct
		// values; those are lowered rune by rune below instead.
		s = strings.ToLower(s)
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			clean = false
			break
		}
	}
	if clean && utf8.ValidString(s) && !hasC1(s) {
		return capKey(s, s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r >= 0x80 && r <= 0x9f:
			for _, c := range []byte(s[i : i+max(size, 1)]) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		case r < 0x80 && needsEscape(byte(r)):
			fmt.Fprintf(&b, "%%%02X", byte(r))
		default:
			b.WriteRune(unicode.ToLower(r))
		}
		i += max(size, 1)
	}
	return capKey(b.String(), s)
}

func needsEscape(c byte) bool {
	return c < 0x20 || c == 0x7f || c == '%' || c == '/' || c == '\\' || c == '#' || c == '?' || c == '|'
}

// hasC1 reports C1 control characters (U+0080–U+009F), which Table Storage
// also forbids in keys.
func hasC1(s string) bool {
	for _, r := range s {
		if r >= 0x80 && r <= 0x9f {
			return true
		}
	}
	return false
}

func capKey(enc, orig string) string {
	if len(enc) <= maxKeyPart {
		return enc
	}
	sum := sha256.Sum256([]byte(orig))
	cut := maxKeyPart - 33
	for cut > 0 && !utf8.RuneStart(enc[cut]) {
		cut--
	}
	// Do not leave half a %XX escape behind.
	if i := strings.LastIndexByte(enc[:cut], '%'); i >= 0 && i > cut-3 {
		cut = i
	}
	return enc[:cut] + "~" + hex.EncodeToString(sum[:16])
}

// Partition is the PartitionKey of a key part on t's UTC day:
// "<encoded key>|YYYYMMDD". Keys of one value sort by day, so a date range
// of one key is one PartitionKey range.
func Partition(key string, t time.Time) string {
	return EncodeKeyPart(key) + "|" + t.UTC().Format(DayLayout)
}

// maxTicks is 9999-12-31T23:59:59.9999999Z in 100 ns ticks since
// 0001-01-01, the range of .NET DateTime that Key Vault logs come from.
const maxTicks = 3155378975999999999

// unixEpochTicks is 1970-01-01 in ticks since 0001-01-01.
const unixEpochTicks = 621355968000000000

// Ticks is t in 100 ns ticks since 0001-01-01 UTC.
func Ticks(t time.Time) int64 {
	return unixEpochTicks + t.Unix()*10_000_000 + int64(t.Nanosecond()/100)
}

// RowKey orders a partition newest first and is deterministic from the
// record's source: "<19-digit inverted ticks>_<source id>_<12-hex offset>".
// Re-reading the same bytes of the same blob gives the same key, so a
// re-read upserts the same rows instead of adding new ones.
func RowKey(t time.Time, sourceID string, offset int64) string {
	var buf [19 + 1 + 16 + 1 + 12]byte
	b := fmt.Appendf(buf[:0], "%019d_%s_%012x", maxTicks-Ticks(t), sourceID, offset)
	return string(b)
}

// RowKeyTime is the time a RowKey encodes (100 ns precision); ok is false
// for a key not made by RowKey.
func RowKeyTime(rk string) (time.Time, bool) {
	if len(rk) < 20 || rk[19] != '_' {
		return time.Time{}, false
	}
	var inv int64
	for i := 0; i < 19; i++ {
		c := rk[i]
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		inv = inv*10 + int64(c-'0')
	}
	ticks := maxTicks - inv - unixEpochTicks
	return time.Unix(ticks/10_000_000, (ticks%10_000_000)*100).UTC(), true
}

// RowKeyOffset is the blob offset a RowKey made by RowKey encodes.
func RowKeyOffset(rk string) (int64, bool) {
	i := strings.LastIndexByte(rk, '_')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(rk[i+1:], 16, 64)
	return n, err == nil && n >= 0
}

// TimeRowKeyBound is the RowKey prefix bound for time t: rows at or after t
// sort at or before it (newest first).
func TimeRowKeyBound(t time.Time) string {
	return fmt.Sprintf("%019d", maxTicks-Ticks(t))
}

// SourceID identifies one lineage of one blob: the blob's name and its
// creation time. A blob deleted and re-created gets new row keys, so its
// rows never overwrite the rows of the records that were there before.
func SourceID(blob string, created time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", blob, created.UTC().Format(time.RFC3339Nano))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// BlobKey is the RowKey-safe short name of a blob.
func BlobKey(blob string) string {
	sum := sha256.Sum256([]byte(blob))
	return hex.EncodeToString(sum[:8])
}
