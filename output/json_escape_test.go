package output

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// plainWord agrees with the byte-by-byte test on every byte value at every
// position, among plain and random neighbours.
func TestPlainWord(t *testing.T) {
	plainByte := func(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' && c < 0x80 }
	want := func(w []byte) bool {
		for _, c := range w {
			if !plainByte(c) {
				return false
			}
		}
		return true
	}
	r := rand.New(rand.NewPCG(1, 2))
	w := make([]byte, 8)
	for round := 0; round < 200; round++ {
		for i := range w {
			w[i] = byte(r.UintN(256))
			if round%2 == 0 {
				w[i] = byte(0x20 + r.UintN(0x5f)) // printable ASCII, '"' and '\\' among it
			}
		}
		for pos := range 8 {
			for c := range 256 {
				w[pos] = byte(c)
				if got := plainWord(binary.LittleEndian.Uint64(w)); got != want(w) {
					t.Fatalf("plainWord(% x) = %v", w, got)
				}
			}
		}
	}
}
