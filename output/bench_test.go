package output

// Rendering cost per connection record, to io.Discard (through the
// writer's own 64 KiB bufio.Writer, as with stdout).
//
//	go test -run '^$' -bench . -benchmem ./output/

import (
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// benchRecords returns the two records of a loopback HTTP request with
// "Connection: close" as the correlator makes them: the client's (closed
// by local, 5 steps ending in a FIN_WAIT2 timewait socket) and the server's.
func benchRecords() []*timeline.Connection {
	lo := netip.MustParseAddr("127.0.0.1")
	base := time.Date(2026, 11, 25, 14, 2, 11, 204_000_000, time.UTC).UnixNano()
	type ev struct {
		server   bool
		from, to timeline.State
		dead     bool
		done     bool
		dt       int64
	}
	flow := []ev{
		{false, timeline.StateClose, timeline.StateSynSent, false, false, 0},
		{false, timeline.StateSynSent, timeline.StateEstablished, false, false, 31_000},
		{true, timeline.StateListen, timeline.StateSynRecv, false, false, 40_000},
		{true, timeline.StateSynRecv, timeline.StateEstablished, false, false, 41_000},
		{false, timeline.StateEstablished, timeline.StateFinWait1, false, false, 180_000},
		{true, timeline.StateEstablished, timeline.StateCloseWait, false, false, 190_000},
		{false, timeline.StateFinWait1, timeline.StateFinWait2, true, false, 195_000},
		{true, timeline.StateCloseWait, timeline.StateLastAck, false, false, 230_000},
		{false, timeline.StateFinWait2, timeline.StateClose, true, false, 240_000},
		{true, timeline.StateLastAck, timeline.StateClose, true, true, 245_000},
	}
	var recs []*timeline.Connection
	c := timeline.New(timeline.DefaultConfig(), func(conn *timeline.Connection) { recs = append(recs, conn.Clone()) })
	for _, f := range flow {
		e := timeline.Event{Time: base + f.dt, Cookie: 4097, Type: timeline.EventState, OldState: f.from, NewState: f.to,
			LAddr: lo, RAddr: lo, LPort: 41230, RPort: 8080, NetNS: 4026532177, PID: 812, Comm: "wrk",
			SockDead: f.dead, SockDone: f.done}
		if f.from == timeline.StateClose {
			e.LPort = 0
		}
		if f.server {
			e.Cookie = 4098
			e.LPort, e.RPort = 8080, 41230
			e.PID, e.Comm = 4242, "nginx"
		}
		c.Add(&e)
	}
	c.Flush()
	return recs
}

func benchWriter(b *testing.B, w Writer) {
	recs := benchRecords()
	if len(recs) != 2 {
		b.Fatalf("got %d records, want 2", len(recs))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Connection(recs[i&1]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "records/s")
	}
}

func BenchmarkJSONConnection(b *testing.B) { benchWriter(b, NewJSON(io.Discard, Options{})) }

func BenchmarkTextConnection(b *testing.B) {
	b.Run("utc", func(b *testing.B) { benchWriter(b, NewText(io.Discard, time.UTC, Options{})) })
	// time.Local as the CLI uses it: each record's time is converted with
	// the zone's rules.
	b.Run("local", func(b *testing.B) { benchWriter(b, NewText(io.Discard, nil, Options{})) })
}

// BenchmarkJSONEvent: the per-event line of --events.
func BenchmarkJSONEvent(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	e := timeline.Event{Time: 1_764_079_331_204_000_000, Cookie: 4097, Type: timeline.EventState,
		OldState: timeline.StateSynSent, NewState: timeline.StateEstablished,
		LAddr: lo, RAddr: lo, LPort: 41230, RPort: 8080, NetNS: 4026532177, PID: 812, Comm: "wrk"}
	w := NewJSON(io.Discard, Options{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := w.Event(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// Prototypes (test code only) of cheaper pieces of JSON.Connection, each
// checked to write the same bytes as the code it would replace:
//   - strings that need no escaping (every enum name, nearly every comm) are
//     appended whole after one scan, instead of byte by byte;
//   - *_ms fields formatted from integer microseconds rather than through
//     strconv.AppendFloat(ms, 'f', 3);
//   - the date-time prefix of an RFC 3339 timestamp cached per second.
// The inputs are what one client record of the benchmark writes.

func benchAppendStringFast(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return appendString(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// benchAppendMs writes ns >= 0 as milliseconds with 3 decimals, rounding
// half up (AppendFloat rounds the binary value: they can differ on exact
// ties of 500 ns).
func benchAppendMs(b []byte, ns int64) []byte {
	us := (ns + 500) / 1000
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

type benchTimeCache struct {
	sec    int64
	prefix []byte
}

func (t *benchTimeCache) appendRFC3339Nano(b []byte, ns int64) []byte {
	sec, frac := ns/1e9, ns%1e9
	if frac < 0 {
		sec, frac = sec-1, frac+1e9
	}
	if sec != t.sec || t.prefix == nil {
		t.prefix = time.Unix(sec, 0).UTC().AppendFormat(t.prefix[:0], "2006-01-02T15:04:05")
		t.sec = sec
	}
	b = append(b, t.prefix...)
	if frac != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i >= 1; i-- {
			d[i] = byte('0' + frac%10)
			frac /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, 'Z')
}

// benchRecordStrings are the string values one client record writes.
func benchRecordStrings(c *timeline.Connection) []string {
	ss := []string{c.Family(), c.Role.String(), c.Comm, c.Outcome.String(), c.ClosedBy.String()}
	for _, st := range c.States {
		ss = append(ss, st.String())
	}
	for _, st := range c.Steps {
		ss = append(ss, st.Kind.String(), st.From.String(), st.To.String())
	}
	return ss
}

func BenchmarkJSONPieces(b *testing.B) {
	c := benchRecords()[0]
	strs := benchRecordStrings(c)
	var msVals []int64
	msVals = append(msVals, c.Duration(), max(c.Handshake, 0))
	for _, s := range c.Steps {
		msVals = append(msVals, s.Time-c.Start)
	}
	times := []int64{c.Start, c.End}

	// Same output first.
	var tc benchTimeCache
	for _, s := range strs {
		if string(appendString(nil, s)) != string(benchAppendStringFast(nil, s)) {
			b.Fatalf("string %q differs", s)
		}
	}
	for _, v := range msVals {
		if got, want := benchAppendMs(nil, v), strconv.AppendFloat(nil, ms(v), 'f', 3, 64); string(got) != string(want) {
			b.Fatalf("ms %d: %s, want %s", v, got, want)
		}
	}
	for _, t := range times {
		if got, want := tc.appendRFC3339Nano(nil, t), time.Unix(0, t).UTC().AppendFormat(nil, time.RFC3339Nano); string(got) != string(want) {
			b.Fatalf("time %d: %s, want %s", t, got, want)
		}
	}

	buf := make([]byte, 0, 4096)
	run := func(name string, f func(b []byte) []byte) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = f(buf[:0])
			}
		})
	}
	b.Logf("per client record: %d strings, %d ms values, %d timestamps", len(strs), len(msVals), len(times))
	run("strings/appendString", func(b []byte) []byte {
		for _, s := range strs {
			b = appendString(b, s)
		}
		return b
	})
	run("strings/proto_fast", func(b []byte) []byte {
		for _, s := range strs {
			b = benchAppendStringFast(b, s)
		}
		return b
	})
	run("ms/AppendFloat", func(b []byte) []byte {
		for _, v := range msVals {
			b = strconv.AppendFloat(b, ms(v), 'f', 3, 64)
		}
		return b
	})
	run("ms/proto_int", func(b []byte) []byte {
		for _, v := range msVals {
			b = benchAppendMs(b, v)
		}
		return b
	})
	run("time/AppendFormat", func(b []byte) []byte {
		for _, t := range times {
			b = time.Unix(0, t).UTC().AppendFormat(b, time.RFC3339Nano)
		}
		return b
	})
	run("time/proto_cached", func(b []byte) []byte {
		for _, t := range times {
			b = tc.appendRFC3339Nano(b, t)
		}
		return b
	})
}
