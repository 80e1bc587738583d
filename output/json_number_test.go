package output

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// numberCases: each power of ten and its neighbours, the extremes, and
// random numbers of every length.
func numberCases() []uint64 {
	vs := []uint64{0, 1, 9, 10, 11, 99, 100, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64}
	for _, p := range pow10 {
		vs = append(vs, p-1, p, p+1)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		vs = append(vs, r.Uint64()>>r.IntN(64))
	}
	return vs
}

func TestAppendNumbers(t *testing.T) {
	for _, v := range numberCases() {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %s", v, got)
		}
		for _, i := range []int64{int64(v), -int64(v)} {
			if got, want := string(appendInt([]byte("x"), i)), "x"+strconv.FormatInt(i, 10); got != want {
				t.Fatalf("appendInt(%d) = %s", i, got)
			}
		}
	}
}

// appendMillis writes what it wrote in signed arithmetic throughout: the
// float formatting's result where the nanoseconds are exact microseconds.
func TestAppendMillis(t *testing.T) {
	old := func(ns int64) string {
		b := []byte{}
		if ns < 0 {
			b = append(b, '-')
			ns = -ns
		}
		return string(appendMillisWrapped(b, ns))
	}
	for _, v := range numberCases() {
		for _, ns := range []int64{int64(v), -int64(v), int64(v) - 500, int64(v) + 499} {
			if got, want := string(appendMillis(nil, ns)), old(ns); got != want {
				t.Fatalf("appendMillis(%d) = %s, want %s", ns, got, want)
			}
		}
	}
	if got := string(appendMillis(nil, 12_345_000)); got != strconv.FormatFloat(12.345, 'f', 3, 64) {
		t.Errorf("appendMillis(12.345 ms) = %s", got)
	}
}
