package timeline

// Benchmarks of the correlator on the steady path and of its memory per
// live connection.
//
//	go test -run '^$' -bench . -benchmem ./tracer/timeline/
//	go test -run '^$' -bench MemoryPerConnection -benchtime 1x ./tracer/timeline/

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type benchSeq struct {
	server             bool
	from, to           State
	sockDead, sockDone bool
}

// benchFlow is the kernel's order of events for one loopback HTTP request
// with "Connection: close" (the client closes first): 5 state events on the
// client socket, 5 on the server socket accepted for it.
var benchFlow = []benchSeq{
	{false, StateClose, StateSynSent, false, false},
	{false, StateSynSent, StateEstablished, false, false},
	{true, StateListen, StateSynRecv, false, false},
	{true, StateSynRecv, StateEstablished, false, false},
	{false, StateEstablished, StateFinWait1, false, false},
	{true, StateEstablished, StateCloseWait, false, false},
	{false, StateFinWait1, StateFinWait2, true, false},
	{true, StateCloseWait, StateLastAck, false, false},
	{false, StateFinWait2, StateClose, true, false},
	{true, StateLastAck, StateClose, true, true},
}

var (
	benchLo   = netip.MustParseAddr("127.0.0.1")
	benchBase = int64(1_700_000_000) * 1e9
)

// benchHTTPEvents builds the events of `pairs` client/server pairs with
// `conc` pairs in flight, interleaved at random (seeded), one every gapNs.
// Cookies are 1..2*pairs; every pair completes within the stream, so it can
// be replayed with cookies shifted by 2*pairs and times by the span.
func benchHTTPEvents(pairs, conc int, gapNs int64) []Event {
	rng := rand.New(rand.NewPCG(1, 2))
	type slot struct{ pair, step int }
	slots := make([]slot, 0, conc)
	next := 0
	for ; next < conc && next < pairs; next++ {
		slots = append(slots, slot{pair: next})
	}
	out := make([]Event, 0, pairs*len(benchFlow))
	t := benchBase
	for len(slots) > 0 {
		i := rng.IntN(len(slots))
		s := &slots[i]
		seq := benchFlow[s.step]
		cliPort := uint16(10000 + s.pair%55000)
		e := Event{Time: t, Cookie: uint64(2*s.pair + 1), Type: EventState, OldState: seq.from, NewState: seq.to,
			LAddr: benchLo, RAddr: benchLo, LPort: cliPort, RPort: 8080, NetNS: 4026532177,
			PID: 777, Comm: "wrk", SockDead: seq.sockDead, SockDone: seq.sockDone, Cgroup: 7418}
		if seq.server {
			e.Cookie++
			e.LPort, e.RPort = 8080, cliPort
			e.PID, e.Comm = 4242, "nginx"
		} else if seq.from == StateClose && seq.to == StateSynSent {
			e.LPort = 0 // connect() reports SYN_SENT before the port is chosen
		}
		out = append(out, e)
		t += gapNs
		if s.step++; s.step == len(benchFlow) {
			if next < pairs {
				*s = slot{pair: next}
				next++
			} else {
				slots[i] = slots[len(slots)-1]
				slots = slots[:len(slots)-1]
			}
		}
	}
	return out
}

// benchReplayer replays a stream from benchHTTPEvents for ever, shifting
// cookies and times on each pass, so that every cookie is new and time only
// moves forward across calls.
type benchReplayer struct {
	stream    []Event
	pairs     int
	span      int64
	j         int
	total     int
	cookieOff uint64
	timeOff   int64
	ev        Event
}

func newBenchReplayer(stream []Event, pairs int, gapNs int64) *benchReplayer {
	return &benchReplayer{stream: stream, pairs: pairs, span: int64(len(stream)) * gapNs}
}

// run feeds n events to add and calls advance every 4096 events, as
// tracer.Run does under load (it ticks every 4096 samples when the buffer
// never drains).
func (r *benchReplayer) run(n int, add func(*Event), advance func(int64)) {
	for i := 0; i < n; i++ {
		r.ev = r.stream[r.j]
		r.ev.Cookie += r.cookieOff
		r.ev.Time += r.timeOff
		add(&r.ev)
		if r.total++; r.total&4095 == 0 {
			advance(r.ev.Time)
		}
		if r.j++; r.j == len(r.stream) {
			r.j = 0
			r.cookieOff += uint64(2 * r.pairs)
			r.timeOff += r.span
		}
	}
}

func BenchmarkCorrelate(b *testing.B) {
	b.Logf("sizeof Event=%d Connection=%d Step=%d", unsafe.Sizeof(Event{}), unsafe.Sizeof(Connection{}), unsafe.Sizeof(Step{}))
	for _, tc := range []struct {
		conc  int
		gapNs int64 // 10 µs: ~100k events/s as in bench/overhead.sh; 500 ns: 2 M events/s
	}{{32, 10_000}, {1024, 10_000}, {32, 500}, {1024, 500}} {
		b.Run(fmt.Sprintf("conc=%d/gap=%dns", tc.conc, tc.gapNs), func(b *testing.B) {
			const pairs = 4096
			stream := benchHTTPEvents(pairs, tc.conc, tc.gapNs)
			emitted := 0
			c := New(DefaultConfig(), func(*Connection) { emitted++ })
			r := newBenchReplayer(stream, pairs, tc.gapNs)
			// Warm up: reach the steady state (free list and map grown).
			r.run(4*len(stream), c.Add, c.Advance)
			warm := emitted
			b.ReportAllocs()
			b.ResetTimer()
			r.run(b.N, c.Add, c.Advance)
			b.StopTimer()
			reportRate(b, b.N)
			b.ReportMetric(float64(b.N)/float64(max(emitted-warm, 1)), "events/record")
			b.ReportMetric(float64(c.Live()), "live")
		})
	}
}

func reportRate(b *testing.B, events int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(events)/s, "events/s")
	}
}

// benchOpenEvents returns the two events of a connection that opens and stays
// open: half clients (CLOSE -> SYN_SENT -> ESTABLISHED), half servers
// (LISTEN -> SYN_RECV -> ESTABLISHED), with distinct 4-tuples.
func benchOpenEvents(i int, t int64) (e1, e2 Event) {
	cookie := uint64(i + 1)
	raddr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	port := uint16(10000 + i%55000)
	if i%2 == 0 {
		e1 = Event{Time: t, Cookie: cookie, Type: EventState, OldState: StateClose, NewState: StateSynSent,
			LAddr: benchLo, RAddr: raddr, RPort: 443, NetNS: 4026531840, PID: 777, Comm: "wrk"}
		e2 = e1
		e2.Time += 50_000
		e2.OldState, e2.NewState, e2.LPort = StateSynSent, StateEstablished, port
	} else {
		e1 = Event{Time: t, Cookie: cookie, Type: EventState, OldState: StateListen, NewState: StateSynRecv,
			LAddr: benchLo, RAddr: raddr, LPort: 8080, RPort: port, NetNS: 4026531840, PID: 4242, Comm: "nginx"}
		e2 = e1
		e2.Time += 1_000
		e2.OldState, e2.NewState = StateSynRecv, StateEstablished
	}
	return e1, e2
}

// benchMemReport reports the heap growth per connection, the process's RSS
// (meaningful when the sub-benchmark runs alone in its process) and how long
// a full GC cycle takes with the table live.
func benchMemReport(b *testing.B, before uint64, n int) {
	after := heapInuse()
	b.ReportMetric(float64(after-before)/float64(n), "bytes/conn")
	b.ReportMetric(float64(after-before)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(vmRSS())/(1<<20), "rss-MiB")
	t0 := time.Now()
	runtime.GC()
	b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "gc-ms")
}

// vmRSS is the process's resident set size in bytes, 0 if unknown.
func vmRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(rest, "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkMemoryPerConnection: 1,000,000 connections that opened and stay
// open, in a correlator with MaxConnections = 1<<20. Run with -benchtime 1x,
// each sub-benchmark alone for its rss-MiB:
//
//	go test -run '^$' -bench 'MemoryPerConnection/^packed$' -benchtime 1x ./tracer/timeline/
func BenchmarkMemoryPerConnection(b *testing.B) {
	const n = 1_000_000
	// packed: as the tracer runs, connections opening at 10,000/s with
	// Advance every 100 ms, so those at rest are packed after PackAfter;
	// measured once all are at rest, after the runtime returned what it
	// freed to the system (debug.FreeOSMemory, as its scavenger does).
	b.Run("packed", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			b.StopTimer()
			before := heapInuse()
			debug.FreeOSMemory()
			b.ReportMetric(float64(vmRSS())/(1<<20), "rss-before-MiB")
			b.StartTimer()
			cfg := DefaultConfig()
			cfg.MaxConnections = 1 << 20
			c := New(cfg, func(*Connection) {})
			var now int64
			for i := 0; i < n; i++ {
				now = benchBase + int64(i)*100_000
				e1, e2 := benchOpenEvents(i, now)
				c.Add(&e1)
				c.Add(&e2)
				if i%1000 == 0 {
					c.Advance(now)
				}
			}
			c.Advance(now + cfg.PackAfter + 1e6)
			b.StopTimer()
			if c.Live() != n || c.Packed() != n {
				b.Fatalf("live %d packed %d, want %d", c.Live(), c.Packed(), n)
			}
			debug.FreeOSMemory()
			benchMemReport(b, before, n)
			b.ReportMetric(float64(unsafe.Sizeof(packedConn{})), "sizeof(packedConn)")
			runtime.KeepAlive(c)
			b.StartTimer()
		}
	})
	b.Run("unpacked", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			b.StopTimer()
			before := heapInuse()
			b.StartTimer()
			c := New(Config{MaxConnections: 1 << 20}, func(*Connection) {})
			for i := 0; i < n; i++ {
				e1, e2 := benchOpenEvents(i, benchBase+int64(i)*1000)
				c.Add(&e1)
				c.Add(&e2)
			}
			b.StopTimer()
			if c.Live() != n {
				b.Fatalf("live %d, want %d", c.Live(), n)
			}
			benchMemReport(b, before, n)
			conn := c.live[1]
			b.ReportMetric(float64(unsafe.Sizeof(*conn)), "sizeof(Connection)")
			b.ReportMetric(float64(cap(conn.States)*int(unsafe.Sizeof(State(0)))), "States-bytes")
			b.ReportMetric(float64(cap(conn.Steps)*int(unsafe.Sizeof(Step{}))), "Steps-bytes")
			// Every record emitted: what the free list keeps for ever.
			before = heapInuse()
			c.Flush()
			b.ReportMetric(float64(int64(heapInuse())-int64(before))/n, "flush-delta-bytes/conn")
			b.ReportMetric(float64(len(c.free)), "free-list-len")
			runtime.KeepAlive(c)
			b.StartTimer()
		}
	})

	// How much of that is the map alone: the same keys, map[uint64]*T with
	// small T (one shared object), and map[uint64]uint32 (an index).
	b.Run("map_only_ptr", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			before := heapInuse()
			shared := &Connection{}
			m := make(map[uint64]*Connection)
			for i := 0; i < n; i++ {
				m[uint64(i+1)] = shared
			}
			benchMemReport(b, before, n)
			runtime.KeepAlive(m)
		}
	})
	b.Run("map_only_idx", func(b *testing.B) {
		for it := 0; it < b.N; it++ {
			before := heapInuse()
			m := make(map[uint64]uint32)
			for i := 0; i < n; i++ {
				m[uint64(i+1)] = uint32(i)
			}
			benchMemReport(b, before, n)
			runtime.KeepAlive(m)
		}
	})

	// Prototypes (test code only) of compact layouts.
	b.Run("proto_inline_arrays", func(b *testing.B) {
		// Connection with States as [8]State and the state steps as
		// [8]uint32 µs offsets inline, no per-connection slices: the
		// pointer map and the struct, as the live table would hold them.
		for it := 0; it < b.N; it++ {
			before := heapInuse()
			m := make(map[uint64]*benchInlineConn)
			for i := 0; i < n; i++ {
				e1, e2 := benchOpenEvents(i, benchBase+int64(i)*1000)
				bc := &benchInlineConn{}
				bc.fill(&e1, &e2)
				m[e1.Cookie] = bc
			}
			benchMemReport(b, before, n)
			b.ReportMetric(float64(unsafe.Sizeof(benchInlineConn{})), "sizeof")
			runtime.KeepAlive(m)
		}
	})
	b.Run("proto_compact_slab", func(b *testing.B) {
		// Compact records in one slab ([]benchCompactConn, preallocated
		// for MaxConnections) plus an open-addressing uint32 index keyed by
		// cookie: no per-connection heap objects, nothing for the GC to scan.
		for it := 0; it < b.N; it++ {
			before := heapInuse()
			t := newBenchCompactTable(1 << 20)
			for i := 0; i < n; i++ {
				e1, e2 := benchOpenEvents(i, benchBase+int64(i)*1000)
				idx := t.insert(e1.Cookie)
				t.slab[idx].fill(&e1, &e2)
			}
			benchMemReport(b, before, n)
			b.ReportMetric(float64(unsafe.Sizeof(benchCompactConn{})), "sizeof")
			runtime.KeepAlive(t)
		}
	})
}

// benchInlineConn is Connection with its variable parts made fixed-size:
// what Connection costs when States/Steps live inline.
type benchInlineConn struct {
	Cookie                  uint64
	Start, End              int64
	LAddr, RAddr            netip.Addr
	LPort, RPort            uint16
	NetNS, PID, UID         uint32
	Comm                    string
	Role, Outcome, ClosedBy uint8
	Flags                   uint8 // RSTSent, RSTReceived, Partial, Evicted, rstSentLive
	Errno                   uint16
	NStates, NSteps         uint8
	CloseFrom               State
	Handshake               int64
	SynRetries, SynAckRetr  uint16
	Retransmits             uint32
	RSTReason               string
	States                  [8]State
	StepUs                  [8]uint32 // state steps: µs since Start
	Extra                   *[]Step   // Retransmits2, RSTs, errors, overflow
	LastSyn, ClosedAt       int64
	StepsDropped            uint32
	Prev, Next              *benchInlineConn
}

func (c *benchInlineConn) fill(e1, e2 *Event) {
	c.Cookie, c.Start, c.End = e1.Cookie, e1.Time, e2.Time
	c.LAddr, c.RAddr, c.LPort, c.RPort = e2.LAddr, e2.RAddr, e2.LPort, e2.RPort
	c.NetNS, c.PID, c.UID, c.Comm = e1.NetNS, e1.PID, e1.UID, e1.Comm
	c.States[0], c.States[1], c.NStates = e1.NewState, e2.NewState, 2
	c.StepUs[0], c.StepUs[1], c.NSteps = 0, uint32((e2.Time-e1.Time)/1000), 2
	c.Handshake = -1
}

// benchCompactConn: IPv4 addresses inline, IPv6 in a side table (Addr6 is
// its index + 1), the process name interned to a uint16, states packed in
// 4 bits each, the first 4 state steps as µs offsets, links as indices.
type benchCompactConn struct {
	Cookie          uint64
	Start           int64
	EndUs           uint32 // End - Start, µs
	LAddr4, RAddr4  [4]byte
	Addr6           uint32
	LPort, RPort    uint16
	NetNS, PID, UID uint32
	Comm2           uint16
	Role            uint8
	Flags           uint8
	States2         uint32 // 8 states, 4 bits each
	NStates         uint8
	CloseFrom       uint8
	Errno           uint16
	StepUs          [4]uint32
	Extra           uint32 // index+1 of overflow steps in a side table
	Prev, Next      uint32
	ClosedAtUs      uint32
	Retries         uint16 // SYN or SYN-ACK Retries
	Retransmits2    uint16
}

func (c *benchCompactConn) fill(e1, e2 *Event) {
	c.Cookie, c.Start, c.EndUs = e1.Cookie, e1.Time, uint32((e2.Time-e1.Time)/1000)
	c.LAddr4, c.RAddr4 = e2.LAddr.As4(), e2.RAddr.As4()
	c.LPort, c.RPort = e2.LPort, e2.RPort
	c.NetNS, c.PID, c.UID = e1.NetNS, e1.PID, e1.UID
	c.Comm2 = 1
	c.States2 = uint32(e1.NewState) | uint32(e2.NewState)<<4
	c.NStates = 2
	c.StepUs[1] = c.EndUs
}

type benchCompactTable struct {
	index []uint32 // slot -> slab index + 1; 0 empty
	slab  []benchCompactConn
	mask  uint64
}

func newBenchCompactTable(maxConns int) *benchCompactTable {
	// Index at most half full; power of two.
	slots := 1
	for slots < 2*maxConns {
		slots <<= 1
	}
	return &benchCompactTable{
		index: make([]uint32, slots),
		slab:  make([]benchCompactConn, 0, maxConns),
		mask:  uint64(slots - 1),
	}
}

func (t *benchCompactTable) insert(cookie uint64) int {
	h := cookie * 0x9E3779B97F4A7C15
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		if t.index[i] == 0 {
			t.slab = append(t.slab, benchCompactConn{})
			t.index[i] = uint32(len(t.slab))
			return len(t.slab) - 1
		}
		if t.slab[t.index[i]-1].Cookie == cookie {
			return int(t.index[i] - 1)
		}
	}
}

// BenchmarkLookupProto isolates the per-event table work that dominates
// Correlator.Add: find the record by cookie, read one field, write another.
// "map_ptr" is the correlator's map[uint64]*Connection; "slab_index" the
// open-addressing uint32 index into a slab of compact records prototyped
// above. Cookies are drawn at random among the live ones.
func BenchmarkLookupProto(b *testing.B) {
	for _, live := range []int{20_000, 1_000_000} {
		rng := rand.New(rand.NewPCG(3, 4))
		keys := make([]uint64, 1<<16)
		for i := range keys {
			keys[i] = uint64(rng.IntN(live)) + 1
		}
		b.Run(fmt.Sprintf("map_ptr/live=%d", live), func(b *testing.B) {
			m := make(map[uint64]*Connection)
			for i := 0; i < live; i++ {
				m[uint64(i+1)] = &Connection{Cookie: uint64(i + 1), Handshake: -1}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				conn := m[keys[i&(len(keys)-1)]]
				if conn.closedAt == 0 {
					conn.End = int64(i)
				}
			}
		})
		b.Run(fmt.Sprintf("slab_index/live=%d", live), func(b *testing.B) {
			t := newBenchCompactTable(max(live, 1<<16))
			for i := 0; i < live; i++ {
				idx := t.insert(uint64(i + 1))
				t.slab[idx].Cookie = uint64(i + 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := &t.slab[t.insert(keys[i&(len(keys)-1)])]
				if c.ClosedAtUs == 0 {
					c.EndUs = uint32(i)
				}
			}
		})
	}
}
