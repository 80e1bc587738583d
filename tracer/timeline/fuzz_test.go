package timeline_test

// FuzzCorrelator feeds the correlator arbitrary event sequences: cookies
// from a small set (reuse, duplicates, more cookies than the table holds),
// any type, state, flag and errno, times out of order, interleaved with
// Advance and Flush. Whatever the kernel (or a bug in the BPF side) sends,
// the correlator must not panic and must stay within its bounds.
//
//	go test -run '^$' -fuzz FuzzCorrelator -fuzztime 60s ./tracer/timeline/
//
// The seed corpus is testdata/fuzz/FuzzCorrelator, realistic sequences
// written by TestCorrelatorFuzzSeeds with TCPTRACE_WRITE_FUZZ_SEEDS=1.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Fuzz configuration: small, so that eviction and the step caps are hit.
const (
	fuzzMaxConnections = 8
	fuzzMaxSteps       = 4
	fuzzMaxOps         = 2048
	fuzzBaseTime       = int64(1_700_000_000) * 1e9
	fuzzTimeUnit       = int64(100e3) // a delta of 1 is 100 µs
)

// An op is 6 bytes:
//
//	[0] bits 7-5: 0-5 Add, 6 Advance(now), 7 Flush; bits 4-0: cookie 0-31
//	[1] bits 2-0: event type, 1 + value%6 (the decoder lets only known
//	    types through); bit 3 SockDead, 4 SockDone, 5 NoSocket,
//	    6 OwnerSeen, 7 IPv6
//	[2] low nibble: old state, high nibble: new state (0-15: 13-15 are
//	    not states, the decoder passes whatever the kernel wrote)
//	[3] bits 2-0: errno choice; bits 4-3: local port choice; bits 6-5:
//	    remote port choice; bit 7: owner choice
//	[4:6] little-endian int16 time delta in fuzzTimeUnit (negative: time
//	    goes back)
const opSize = 6

const (
	opAdd     = 0
	opAdvance = 6
	opFlush   = 7
)

var (
	fuzzErrnos = [8]uint16{0, 0, uint16(syscall.ECONNREFUSED), uint16(syscall.ETIMEDOUT),
		uint16(syscall.ECONNRESET), uint16(syscall.EPIPE), uint16(syscall.EHOSTUNREACH), 4095}
	fuzzPorts  = [4]uint16{0, 8080, 40000, 40001}
	fuzzComms  = [2]string{"curl", "\x1b[2Jev\xffil\x00"}
	fuzzAddrs4 = [2]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("0.0.0.0")}
	fuzzAddrs6 = [2]netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("::")}
)

// fuzzOp builds one op; fields as documented above.
type fuzzOp struct {
	kind     int // opAdd, opAdvance, opFlush
	cookie   uint8
	typ      timeline.EventType
	from, to timeline.State
	dead     bool
	done     bool
	noSocket bool
	errno    uint8 // index in fuzzErrnos
	lport    uint8 // index in fuzzPorts
	rport    uint8
	dt       int16
}

func (o fuzzOp) encode() []byte {
	b := make([]byte, opSize)
	b[0] = byte(o.kind)<<5 | o.cookie&0x1f
	typ := byte(o.typ) - 1
	b[1] = typ & 7
	if o.dead {
		b[1] |= 1 << 3
	}
	if o.done {
		b[1] |= 1 << 4
	}
	if o.noSocket {
		b[1] |= 1 << 5
	}
	b[1] |= 1 << 6 // owner seen
	b[2] = byte(o.from)&0xf | byte(o.to)<<4
	b[3] = o.errno&7 | (o.lport&3)<<3 | (o.rport&3)<<5
	b[4], b[5] = byte(uint16(o.dt)), byte(uint16(o.dt)>>8)
	return b
}

// decodeOp turns 6 bytes into an event (or a control op) at time *now.
func decodeOp(b []byte, now *int64, e *timeline.Event) (kind int) {
	*now += int64(int16(uint16(b[4])|uint16(b[5])<<8)) * fuzzTimeUnit
	kind = int(b[0] >> 5)
	if kind == opAdvance || kind == opFlush {
		return kind
	}
	*e = timeline.Event{
		Time:      *now,
		Cookie:    uint64(b[0] & 0x1f),
		Type:      timeline.EventType(1 + int(b[1]&7)%6),
		OldState:  timeline.State(b[2] & 0xf),
		NewState:  timeline.State(b[2] >> 4),
		SockDead:  b[1]&(1<<3) != 0,
		SockDone:  b[1]&(1<<4) != 0,
		NoSocket:  b[1]&(1<<5) != 0,
		OwnerSeen: b[1]&(1<<6) != 0,
		Errno:     fuzzErrnos[b[3]&7],
		LPort:     fuzzPorts[b[3]>>3&3],
		RPort:     fuzzPorts[b[3]>>5&3],
		NetNS:     4026531840,
		PID:       uint32(b[3] >> 7 * 42),
		UID:       1000,
		Comm:      fuzzComms[b[3]>>7],
	}
	addrs := fuzzAddrs4
	if b[1]&(1<<7) != 0 {
		addrs = fuzzAddrs6
	}
	e.LAddr, e.RAddr = addrs[b[3]>>3&1], addrs[0]
	if e.Type == timeline.EventRSTSent && b[3]&7 >= 6 {
		e.RSTReason = "NOT_SPECIFIED"
	}
	return opAdd
}

func FuzzCorrelator(f *testing.F) {
	// The seeds are testdata/fuzz/FuzzCorrelator (see fuzzSeeds).
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxOps*opSize {
			data = data[:fuzzMaxOps*opSize]
		}
		cfg := timeline.Config{
			MaxConnections: fuzzMaxConnections,
			MaxSteps:       fuzzMaxSteps,
			CloseGrace:     50e6,
		}
		var emitted uint64
		check := func(c *timeline.Connection) {
			emitted++
			if c.Cookie == 0 {
				t.Fatalf("record for cookie 0: %+v", c)
			}
			if len(c.Steps) > 2*cfg.MaxSteps || len(c.States) > 2*cfg.MaxSteps {
				t.Fatalf("record with %d steps and %d states, MaxSteps %d", len(c.Steps), len(c.States), cfg.MaxSteps)
			}
			// Every enum a record carries must have a name: the writers
			// index tables with them.
			_ = c.Role.String() + c.Outcome.String() + c.ClosedBy.String() + c.LastState().String()
			for i := range c.Steps {
				_ = c.Steps[i].Kind.String() + c.Steps[i].From.String() + c.Steps[i].To.String()
			}
			_ = c.Clone()
		}
		corr := timeline.New(cfg, check)
		now := fuzzBaseTime
		adds := uint64(0)
		var e timeline.Event
		for len(data) >= opSize {
			switch decodeOp(data[:opSize], &now, &e) {
			case opAdd:
				adds++
				corr.Add(&e)
			case opAdvance:
				corr.Advance(now)
			case opFlush:
				corr.Flush()
				if corr.Live() != 0 {
					t.Fatalf("%d connections live after Flush", corr.Live())
				}
			}
			data = data[opSize:]
			if corr.Live() > cfg.MaxConnections {
				t.Fatalf("%d connections live, MaxConnections %d", corr.Live(), cfg.MaxConnections)
			}
		}
		corr.Advance(now + 1e12)
		corr.Flush()
		st := corr.Stats()
		if corr.Live() != 0 {
			t.Fatalf("%d connections live after Flush", corr.Live())
		}
		if st.Connections != emitted {
			t.Fatalf("Stats().Connections %d, emitted %d", st.Connections, emitted)
		}
		if st.Events != adds {
			t.Fatalf("Stats().Events %d, added %d", st.Events, adds)
		}
		var sum uint64
		for _, n := range st.ByOutcome {
			sum += n
		}
		if sum != st.Connections {
			t.Fatalf("outcomes add up to %d, connections %d", sum, st.Connections)
		}
		if st.Evicted > st.Connections {
			t.Fatalf("evicted %d > connections %d", st.Evicted, st.Connections)
		}
	})
}

type fuzzSeed struct {
	name string
	data []byte
}

// seq builds a seed from ops; times are deltas from the previous op.
func seq(ops ...fuzzOp) []byte {
	var b []byte
	for _, o := range ops {
		b = append(b, o.encode()...)
	}
	return b
}

func st(cookie uint8, dt int16, from, to timeline.State) fuzzOp {
	return fuzzOp{cookie: cookie, typ: timeline.EventState, from: from, to: to, lport: 2, rport: 1, dt: dt}
}

func ev(cookie uint8, dt int16, typ timeline.EventType, state timeline.State) fuzzOp {
	return fuzzOp{cookie: cookie, typ: typ, to: state, lport: 2, rport: 1, dt: dt}
}

func ctl(kind int, dt int16) fuzzOp { return fuzzOp{kind: kind, dt: dt} }

// fuzzSeeds are event sequences as the kernel reports them (see the
// README's "How it reads the kernel" and correlator_test.go).
func fuzzSeeds() []fuzzSeed {
	const (
		cl  = timeline.StateClose
		ss  = timeline.StateSynSent
		sr  = timeline.StateSynRecv
		es  = timeline.StateEstablished
		fw1 = timeline.StateFinWait1
		fw2 = timeline.StateFinWait2
		cw  = timeline.StateCloseWait
		la  = timeline.StateLastAck
		ls  = timeline.StateListen
		tw  = timeline.StateTimeWait
		cls = timeline.StateClosing
	)
	server := func(o fuzzOp) fuzzOp { o.lport, o.rport = 1, 2; return o }
	dead := func(o fuzzOp) fuzzOp { o.dead = true; return o }
	done := func(o fuzzOp) fuzzOp { o.done = true; return o }
	errno := func(i uint8, o fuzzOp) fuzzOp { o.errno = i; return o }
	lport0 := func(o fuzzOp) fuzzOp { o.lport = 0; return o }

	var many []fuzzOp
	for i := range 12 { // more connections than the table holds
		many = append(many, st(uint8(1+i), 1, cl, ss))
	}
	many = append(many, ctl(opAdvance, 10))
	var retrans []fuzzOp
	retrans = append(retrans, st(1, 0, cl, ss), st(1, 1, ss, es))
	for range 20 {
		retrans = append(retrans, ev(1, 2, timeline.EventRetransmit, es))
	}
	retrans = append(retrans, st(1, 1, es, fw1), errno(3, st(1, 1, fw1, cl)), ctl(opAdvance, 1000))

	return []fuzzSeed{
		{"client_closed_by_local", seq(
			lport0(st(1, 0, cl, ss)), st(1, 1, ss, es), st(1, 2, es, fw1),
			dead(st(1, 1, fw1, fw2)), lport0(dead(done(st(1, 1, fw2, cl)))),
			ctl(opAdvance, 1000))},
		{"server_closed_by_peer", seq(
			server(st(9, 0, cl, ls)),
			server(st(2, 10, ls, sr)), server(st(2, 0, sr, es)), server(st(2, 1, es, cw)),
			server(st(2, 1, cw, la)), server(st(2, 1, la, cl)),
			server(st(9, 100, ls, cl)), ctl(opAdvance, 1000))},
		{"refused", seq(
			st(3, 0, cl, ss), ev(3, 1, timeline.EventRSTReceived, ss),
			errno(2, st(3, 0, ss, cl)), errno(2, ev(3, 0, timeline.EventError, cl)),
			fuzzOp{kind: opAdd, cookie: 0, typ: timeline.EventRSTSent, noSocket: true, lport: 1, rport: 2},
			ctl(opAdvance, 1000))},
		{"syn_timeout", seq(
			st(4, 0, cl, ss), ev(4, 10000, timeline.EventRetransmit, ss),
			ev(4, 20000, timeline.EventRetransmit, ss), errno(3, st(4, 30000, ss, cl)),
			errno(3, ev(4, 0, timeline.EventError, cl)), ctl(opFlush, 0))},
		{"reset_local_linger0", seq(
			st(5, 0, cl, ss), st(5, 1, ss, es), st(5, 5, es, cl),
			errno(6, ev(5, 0, timeline.EventRSTSent, cl)), errno(4, ev(5, 0, timeline.EventError, cl)),
			ctl(opAdvance, 1000))},
		{"reset_by_peer", seq(
			server(st(6, 0, ls, sr)), server(st(6, 0, sr, es)),
			server(ev(6, 3, timeline.EventRSTReceived, es)), errno(4, server(st(6, 0, es, cl))),
			errno(4, server(ev(6, 0, timeline.EventError, cl))), ctl(opFlush, 0))},
		{"synack_retries_joined", seq(
			server(st(7, 0, cl, ls)), server(ev(7, 10000, timeline.EventSynAckRetransmit, sr)),
			server(ev(7, 20000, timeline.EventSynAckRetransmit, sr)),
			server(st(8, 5000, ls, sr)), server(st(8, 0, sr, es)), ctl(opFlush, 0))},
		{"timewait_rst_stray", seq(
			st(10, 0, cl, ss), st(10, 1, ss, es), st(10, 1, es, fw1), st(10, 1, fw1, cls),
			done(st(10, 1, cls, cl)), ctl(opAdvance, 1000),
			ev(10, 100, timeline.EventRSTSent, tw), ctl(opFlush, 0))},
		{"connect_again_same_socket", seq(
			st(11, 0, cl, ss), errno(2, st(11, 1, ss, cl)), st(11, 1, cl, ss), st(11, 1, ss, es),
			ctl(opFlush, 0))},
		{"out_of_order", seq(
			st(12, 100, cl, ss), st(12, -50, ss, es), st(12, -50, es, cl), ctl(opAdvance, -1000),
			ev(12, 0, timeline.EventRSTSent, cl), ctl(opAdvance, 2000))},
		{"eviction", seq(many...)},
		{"steps_bounded", seq(retrans...)},
	}
}

// TestCorrelatorFuzzSeeds runs the seeds (as FuzzCorrelator does) and, with
// TCPTRACE_WRITE_FUZZ_SEEDS=1, writes them to testdata/fuzz/FuzzCorrelator.
func TestCorrelatorFuzzSeeds(t *testing.T) {
	if os.Getenv("TCPTRACE_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set TCPTRACE_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzCorrelator")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzCorrelator")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range fuzzSeeds() {
		if err := os.WriteFile(filepath.Join(dir, s.name), corpusFile(s.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// corpusFile is a one-value file in the "go test fuzz v1" format.
func corpusFile(b []byte) []byte {
	var sb strings.Builder
	sb.WriteString("go test fuzz v1\n[]byte(")
	fmt.Fprintf(&sb, "%q", b)
	sb.WriteString(")\n")
	return []byte(sb.String())
}
