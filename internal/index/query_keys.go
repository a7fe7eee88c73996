package index

import (
	"fmt"
	"time"
)

// Bounds of the times a RowKey can encode: .NET DateTime's range, which is
// also what keeps the inverted ticks at 19 digits.
var (
	minKeyTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxKeyTime = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)
)

// RowKeyRange returns the RowKey bounds of the records whose time t lies in
// [from, to): a row made by [RowKey] is in the window exactly when
// lo <= RowKey < hi. from and to are first rounded up to the next 100 ns
// tick (record times have tick precision, so rounding up keeps from
// inclusive and to exclusive for any instant) and clamped to the range
// RowKey can encode. When to <= from, lo >= hi and no key is in range.
//
// Why not [TimeRowKeyBound] directly: a key is its 19-digit inverted ticks
// followed by "_…", so it sorts after the bare 19 digits of its own
// instant; the bounds are therefore the digits of the instant one tick
// earlier than each end.
func RowKeyRange(from, to time.Time) (lo, hi string) {
	inv := func(t time.Time) int64 {
		if t.Before(minKeyTime) {
			t = minKeyTime
		}
		if t.After(maxKeyTime) {
			return -1 // past the last tick: every key is before it
		}
		ticks := Ticks(t)
		if t.Nanosecond()%100 != 0 {
			ticks++
		}
		return maxTicks - ticks
	}
	// inverted(t) >= inv(to)+1  ⇔  t < to;  inverted(t) < inv(from)+1  ⇔  t >= from.
	return fmt.Sprintf("%019d", inv(to)+1), fmt.Sprintf("%019d", inv(from)+1)
}

// IsRowKey reports whether rk has the shape [RowKey] gives: 19 digits, "_",
// 16 lower-case hex digits (the lineage), "_", 12 to 16 lower-case hex
// digits (the offset). Continuation tokens carry row keys back from
// clients; only keys of this shape, which hold no quote or other OData
// syntax, may be placed in a filter.
func IsRowKey(rk string) bool {
	if len(rk) < 19+1+16+1+12 || len(rk) > 19+1+16+1+16 {
		return false
	}
	for i := 0; i < len(rk); i++ {
		c := rk[i]
		switch {
		case i < 19:
			if c < '0' || c > '9' {
				return false
			}
		case i == 19 || i == 36:
			if c != '_' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
