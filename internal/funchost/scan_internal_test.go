package funchost

import (
	"math/rand/v2"
	"testing"
)

// TestIndexStop holds the word-at-a-time search to the byte table: every
// byte value at every position, then random windows with several stops.
func TestIndexStop(t *testing.T) {
	naive := func(w []byte, i int) int {
		for i < len(w) && !stringStop[w[i]] {
			i++
		}
		return i
	}
	for v := range 256 {
		for n := 0; n <= 24; n++ {
			for p := range n {
				w := make([]byte, n)
				for k := range w {
					w[k] = 'A' + byte(k%26)
				}
				w[p] = byte(v)
				for start := 0; start <= n; start += 3 {
					if got, want := indexStop(w, start), naive(w, start); got != want {
						t.Fatalf("byte %#02x at %d of %d, from %d: indexStop = %d, want %d", v, p, n, start, got, want)
					}
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("AZaz09+/=\"\\\x00\x1f\x20\x7f\x80\xff\xdf\xa2\xdc")
	for range 20000 {
		w := make([]byte, rng.IntN(64))
		for k := range w {
			if rng.IntN(8) == 0 {
				w[k] = alphabet[rng.IntN(len(alphabet))]
			} else {
				w[k] = byte(rng.IntN(256))
			}
		}
		start := rng.IntN(len(w) + 1)
		if got, want := indexStop(w, start), naive(w, start); got != want {
			t.Fatalf("%q from %d: indexStop = %d, want %d", w, start, got, want)
		}
	}
}
