package output

import "strconv"

// The two ways a span of time is written, by text and ladder alike.

// appendDuration writes a measured duration (a connection's lifetime, an
// RTT) compactly: "812µs", "12.3ms" or "7.10s".
func appendDuration(b []byte, ns int64) []byte {
	switch {
	case ns < 1e6:
		b = strconv.AppendInt(b, ns/1e3, 10)
		return append(b, "µs"...)
	case ns < 1e9:
		b = strconv.AppendFloat(b, ms(ns), 'f', 1, 64)
		return append(b, "ms"...)
	}
	b = strconv.AppendFloat(b, float64(ns)/1e9, 'f', 2, 64)
	return append(b, 's')
}

// appendWait writes a timer's wait (a SYN retry's interval) as it is read:
// "200 ms", "1.0 s", "16 s".
func appendWait(b []byte, ns int64) []byte {
	switch {
	case ns < 1e9:
		b = strconv.AppendInt(b, (ns+5e5)/1e6, 10)
		return append(b, " ms"...)
	case ns < 10e9:
		b = strconv.AppendFloat(b, float64(ns)/1e9, 'f', 1, 64)
		return append(b, " s"...)
	}
	b = strconv.AppendInt(b, (ns+5e8)/1e9, 10)
	return append(b, " s"...)
}
