package output

import (
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// Numbers in JSON, written in place: a record holds some twenty of them,
// most of one digit. strconv formats into a buffer of its own and then
// copies it (a call to memmove each time); these count the digits first
// and write them where they go, two at a time.

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" + "60616263646566676869" +
	"70717273747576777879" + "80818283848586878889" + "90919293949596979899"

// pow10 holds 10^0 to 10^19, every power of ten a uint64 holds.
var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// decimalLen is the number of decimal digits of v > 0: log10 from the bit
// length (1233/4096 is just above log10(2)), corrected by one comparison.
func decimalLen(v uint64) int {
	n := bits.Len64(v) * 1233 >> 12
	if v >= pow10[n] {
		n++
	}
	return n
}

// appendUint is strconv.AppendUint(b, v, 10).
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	n := decimalLen(v)
	b = slices.Grow(b, n)
	start := len(b)
	b = b[:start+n]
	putDigits(b[start:], v)
	return b
}

// putDigits writes v in decimal into all of d, which is exactly as long
// as v has digits (the leading ones zeros if longer).
func putDigits(d []byte, v uint64) {
	i := len(d)
	for i >= 2 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		d[i], d[i+1] = digitPairs[r], digitPairs[r+1]
		v = q
	}
	if i == 1 {
		d[0] = byte('0' + v)
	}
}

// appendInt is strconv.AppendInt(b, v, 10).
func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	if v == math.MinInt64 {
		return strconv.AppendInt(b, v, 10)
	}
	return appendUint(append(b, '-'), uint64(-v))
}

// appendMillis writes ns as milliseconds with 3 decimals, rounded to the
// microsecond, in integer arithmetic (strconv's float formatting is a
// fifth of the cost of a record).
func appendMillis(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	if ns < 0 || ns > math.MaxInt64-500 {
		return appendMillisWrapped(b, ns)
	}
	us := (uint64(ns) + 500) / 1000
	b = appendUint(b, us/1000)
	frac := us % 1000
	b = append(b, '.', 0, 0, 0)
	putDigits(b[len(b)-3:], frac)
	return b
}

// appendMillisWrapped is what appendMillis wrote, in signed arithmetic,
// for the nanoseconds whose rounding overflows (and math.MinInt64, which
// has no opposite): nonsense input, but its output is kept as it was.
func appendMillisWrapped(b []byte, ns int64) []byte {
	us := (ns + 500) / 1000
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}
