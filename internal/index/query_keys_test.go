package index

import (
	"testing"
	"time"
)

func TestRowKeyRangeAtExactInstants(t *testing.T) {
	from := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	tick := 100 * time.Nanosecond
	tests := []struct {
		name     string
		from, to time.Time
		at       time.Time
		in       bool
	}{
		{"at from", from, to, from, true},
		{"one tick before from", from, to, from.Add(-tick), false},
		{"one tick before to", from, to, to.Add(-tick), true},
		{"at to", from, to, to, false},
		{"after to", from, to, to.Add(time.Hour), false},
		// A bound between two ticks: from rounds up, to rounds up.
		{"from mid-tick, record on the tick before", from.Add(50), to, from, false},
		{"from mid-tick, record on the tick after", from.Add(50), to, from.Add(tick), true},
		{"to mid-tick, record on the tick before", from, to.Add(50), to, true},
		{"to mid-tick, record on the tick after", from, to.Add(50), to.Add(tick), false},
		{"empty window", from, from, from, false},
		{"far future to", from, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), to, true},
		{"ancient from", time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), to, from, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := RowKeyRange(tt.from, tt.to)
			for _, off := range []int64{0, 1, 0xffffffffffff} {
				rk := RowKey(tt.at, "0123456789abcdef", off)
				if got := lo <= rk && rk < hi; got != tt.in {
					t.Fatalf("key %q in [%q, %q) = %v, want %v", rk, lo, hi, got, tt.in)
				}
			}
			if len(lo) != 19 || len(hi) != 19 {
				t.Fatalf("bounds %q %q are not 19 digits", lo, hi)
			}
		})
	}
}

func TestIsRowKey(t *testing.T) {
	good := RowKey(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), "0123456789abcdef", 42)
	if !IsRowKey(good) {
		t.Fatalf("IsRowKey(%q) = false", good)
	}
	for _, bad := range []string{
		"", good[:48], good + "00000", "x" + good[1:], good[:19] + "-" + good[20:],
		good[:20] + "0123456789ABCDEF" + good[36:], good[:40] + "'" + good[41:],
		good[:36] + "|" + good[37:],
	} {
		if IsRowKey(bad) {
			t.Errorf("IsRowKey(%q) = true", bad)
		}
	}
}
