package output

import (
	"encoding/binary"
	"unicode/utf8"
)

// JSON string escaping: the scans that decide a string needs none (nearly
// always), and the escaping itself.

const (
	lowBits  = 0x0101010101010101 // the lowest bit of each byte of a word
	highBits = 0x8080808080808080 // the highest bit of each byte
)

// plainWord reports whether none of the 8 bytes of w is below 0x20, '"',
// '\\' or above 0x7f. Each term sets a byte's high bit where that byte is
// one of these (w itself: those above 0x7f); a false high bit only comes
// from a borrow out of a lower byte that is one of them already.
func plainWord(w uint64) bool {
	ctl := w - lowBits*0x20
	quote := (w ^ lowBits*'"') - lowBits
	backslash := (w ^ lowBits*'\\') - lowBits
	return (ctl|quote|backslash|w)&highBits == 0
}

// escapeInPlace JSON-escapes b[start:], text just appended unescaped.
// Explanations are ASCII built from constants and numbers, so this is
// usually a scan that changes nothing, 8 bytes at a time.
func escapeInPlace(b []byte, start int) []byte {
	i := start
	for ; i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])); i += 8 {
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			tail := string(b[start:])
			b = appendString(b[:start], tail)
			return append(b[:start], b[start+1:len(b)-1]...) // drop the quotes appendString adds
		}
	}
	return b
}

// needsEscape: s has a byte that JSON must escape, or non-ASCII bytes that
// must be checked for valid UTF-8. Names and enums never do.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return true
		}
	}
	return false
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD and
// control characters are escaped, so the line stays valid JSON whatever a
// process names itself.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	if !needsEscape(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
