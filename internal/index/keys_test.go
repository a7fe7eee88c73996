package index

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestEncodeKeyPart(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"MyVault", "myvault"},
		{"john.doe@dummy.onmicrosoft.com", "john.doe@dummy.onmicrosoft.com"},
		{"a/b\\c#d?e|f%g", "a%2Fb%5Cc%23d%3Fe%7Cf%25g"},
		{"tab\there\nnl\x7f", "tab%09here%0Anl%7F"},
		{"c1\u0085x", "c1%C2%85x"},
		{"bad\xffutf8", "bad%FFutf8"},
		{"Ünïcödé", "ünïcödé"},
	}
	for _, tt := range tests {
		if got := EncodeKeyPart(tt.in); got != tt.want {
			t.Errorf("EncodeKeyPart(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEncodeKeyPartLimits(t *testing.T) {
	long := strings.Repeat("/", 5000)
	a, b := EncodeKeyPart(long), EncodeKeyPart(long+"x")
	if len(a) > maxKeyPart || len(b) > maxKeyPart {
		t.Fatalf("lengths %d %d exceed %d", len(a), len(b), maxKeyPart)
	}
	if a == b {
		t.Fatal("distinct long values collide")
	}
	for _, k := range []string{a, b, EncodeKeyPart(strings.Repeat("é", 3000))} {
		if !utf8.ValidString(k) {
			t.Errorf("invalid UTF-8 key %q", k)
		}
		if strings.ContainsAny(k, "/\\#?") {
			t.Errorf("forbidden character in %q", k)
		}
	}
}

func TestRowKeyOrderAndRoundTrip(t *testing.T) {
	base := time.Date(2026, 11, 21, 23, 59, 59, 999999900, time.UTC)
	older := RowKey(base.Add(-100*time.Nanosecond), "0123456789abcdef", 10)
	newer := RowKey(base, "0123456789abcdef", 5)
	if !(newer < older) {
		t.Fatalf("newest must sort first: %q !< %q", newer, older)
	}
	if got, ok := RowKeyTime(newer); !ok || !got.Equal(base) {
		t.Fatalf("RowKeyTime = %v %v, want %v", got, ok, base)
	}
	if RowKey(base, "0123456789abcdef", 5) != newer {
		t.Fatal("RowKey is not deterministic")
	}
	if !(TimeRowKeyBound(base) <= newer && newer < TimeRowKeyBound(base.Add(-100*time.Nanosecond))) {
		t.Fatal("TimeRowKeyBound does not bound the keys of its instant")
	}
}

func TestPartitionDayBoundary(t *testing.T) {
	last := time.Date(2026, 11, 20, 23, 59, 59, 999999900, time.UTC)
	first := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	if p, q := Partition("V", last), Partition("V", first); p != "v|20261120" || q != "v|20261121" {
		t.Fatalf("partitions %q %q", p, q)
	}
	// A local time is placed by its UTC day.
	local := time.Date(2026, 11, 21, 1, 0, 0, 0, time.FixedZone("CET", 3600))
	if p := Partition("v", local); p != "v|20261121" {
		t.Fatalf("partition %q", p)
	}
}
