package tracer

// Micro-benchmarks of the Go side of the hot path: ring buffer sample ->
// timeline.Event. Samples are built as the kernel writes them (struct event,
// through the bpf2go-generated tcptraceEvent), for the loopback HTTP request
// with "Connection: close" that bench/overhead.sh generates: 5 state events
// on the client socket and 5 on the server socket.
//
//	go test -run '^$' -bench 'Decode' -benchmem ./tracer/

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// benchEventSeq is one event of a connection pair's life: which side, which
// transition, and the event's flags.
type benchEventSeq struct {
	server   bool
	from, to timeline.State
	flags    uint8
}

// benchHTTPFlow is the kernel's order of events for one loopback request
// with "Connection: close", client closing first.
var benchHTTPFlow = []benchEventSeq{
	{false, timeline.StateClose, timeline.StateSynSent, uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN)},
	{false, timeline.StateSynSent, timeline.StateEstablished, 0},
	{true, timeline.StateListen, timeline.StateSynRecv, 0},
	{true, timeline.StateSynRecv, timeline.StateEstablished, 0},
	{false, timeline.StateEstablished, timeline.StateFinWait1, uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN)},
	{true, timeline.StateEstablished, timeline.StateCloseWait, 0},
	{false, timeline.StateFinWait1, timeline.StateFinWait2, uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD)},
	{true, timeline.StateCloseWait, timeline.StateLastAck, uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN)},
	{false, timeline.StateFinWait2, timeline.StateClose, uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD)},
	{true, timeline.StateLastAck, timeline.StateClose, uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD | tcptraceEventFlagsEVENT_F_SOCK_DONE)},
}

// benchStream is a pre-built stream of raw samples.
type benchStream struct {
	samples [][]byte // each RawEventSize bytes, as ringbuf.Record.RawSample
	pairs   int
	gapNs   int64 // simulated time between events
}

func benchComm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		c[i] = int8(s[i])
	}
	return c
}

// benchHTTPStream builds the samples of `pairs` client/server pairs, `conc`
// of them in flight at any time, their events interleaved at random (seeded),
// one event every gapNs of kernel time. All pairs complete within the stream,
// so it can be replayed with shifted cookies and times.
func benchHTTPStream(pairs, conc int, gapNs int64, v6 bool) *benchStream {
	rng := rand.New(rand.NewPCG(1, 2))
	type slot struct{ pair, step int }
	slots := make([]slot, 0, conc)
	next := 0
	for ; next < conc && next < pairs; next++ {
		slots = append(slots, slot{pair: next})
	}
	st := &benchStream{pairs: pairs, gapNs: gapNs}
	ts := uint64(1_000_000_000_000) // monotonic ns
	cliComm, srvComm := benchComm("wrk"), benchComm("nginx")
	for len(slots) > 0 {
		i := rng.IntN(len(slots))
		s := &slots[i]
		seq := benchHTTPFlow[s.step]
		cliPort := uint16(10000 + s.pair%55000)
		r := tcptraceEvent{
			TsNs:   ts,
			Netns:  4026532177,
			Uid:    0,
			Family: afInet,
			Type:   uint8(timeline.EventState),
			// 2 cookies per pair: client 2p+1, server 2p+2.
			Cookie:   uint64(2*s.pair + 1),
			Oldstate: uint8(seq.from),
			Newstate: uint8(seq.to),
			Flags:    seq.flags,
			Cgroup:   7418,
		}
		if v6 {
			r.Family = afInet6
			r.Saddr[15], r.Daddr[15] = 1, 1
		} else {
			r.Saddr = [16]uint8{127, 0, 0, 1}
			r.Daddr = [16]uint8{127, 0, 0, 1}
		}
		if seq.server {
			r.Cookie++
			r.Sport, r.Dport = 8080, cliPort
			r.Pid, r.Comm = 4242, srvComm
		} else {
			r.Sport, r.Dport = cliPort, 8080
			if seq.from == timeline.StateClose && seq.to == timeline.StateSynSent {
				r.Sport = 0 // connect() reports SYN_SENT before the port is chosen
			}
			r.Pid, r.Comm = 777, cliComm
		}
		if seq.to != timeline.StateSynSent && seq.from != timeline.StateListen {
			r.Fig.Base.BytesAcked, r.Fig.Base.BytesReceived = 78, 140
			r.Fig.Base.SrttUs, r.Fig.Base.Jiffies = 8*25, 4294667296
		}
		buf := make([]byte, RawEventSize)
		copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(&r)), RawEventSize))
		st.samples = append(st.samples, buf)
		ts += uint64(gapNs)

		if s.step++; s.step == len(benchHTTPFlow) {
			if next < pairs {
				*s = slot{pair: next}
				next++
			} else {
				slots[i] = slots[len(slots)-1]
				slots = slots[:len(slots)-1]
			}
		}
	}
	return st
}

// contiguous returns the samples laid out back to back in one buffer, as in
// the ring buffer's mmap (8-byte header + 8-byte-aligned sample).
func (s *benchStream) contiguous() ([]byte, [][]byte) {
	const hdr = 8
	stride := hdr + (RawEventSize+7)&^7
	buf := make([]byte, stride*len(s.samples))
	out := make([][]byte, len(s.samples))
	for i, smp := range s.samples {
		off := i*stride + hdr
		copy(buf[off:], smp)
		out[i] = buf[off : off+RawEventSize : off+RawEventSize]
	}
	return buf, out
}

func reportRate(b *testing.B, events int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(events)/s, "events/s")
	}
}

func BenchmarkDecode(b *testing.B) {
	b.Logf("RawEventSize=%d sizeof(timeline.Event)=%d", RawEventSize, unsafe.Sizeof(timeline.Event{}))
	for _, tc := range []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}} {
		b.Run(tc.name, func(b *testing.B) {
			st := benchHTTPStream(4096, 64, 10_000, tc.v6)
			_, samples := st.contiguous()
			var d Decoder
			d.MonoToUnix = 1_700_000_000_000_000_000
			var ev timeline.Event
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Decode(samples[i%len(samples)], &ev); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N)
		})
	}

	// The RST-with-reason path: a reason name the kernel's BTF lacks is
	// formatted with fmt.Sprintf, per event.
	b.Run("rst_unknown_reason", func(b *testing.B) {
		r := tcptraceEvent{Cookie: 9, Family: afInet, Type: uint8(timeline.EventRSTSent),
			Newstate: uint8(timeline.StateEstablished), Flags: uint8(tcptraceEventFlagsEVENT_F_REASON), Reason: 77}
		sample := bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&r)), RawEventSize))
		d := Decoder{RSTReasons: []string{"NOT_SPECIFIED"}}
		var ev timeline.Event
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = d.Decode(sample, &ev)
		}
		reportRate(b, b.N)
	})

	// Prototype (test code only): Decode reading the sample in place
	// instead of copying it into a local rawEvent first.
	b.Run("proto_nocopy_ipv4", func(b *testing.B) {
		st := benchHTTPStream(4096, 64, 10_000, false)
		_, samples := st.contiguous()
		var d Decoder
		var ev timeline.Event
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := benchDecodeInPlace(&d, samples[i%len(samples)], &ev); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, b.N)
	})
}

// benchDecodeInPlace is Decode without the copy of the sample: the ring
// buffer hands out 8-byte-aligned samples, so the struct can be read where
// it is.
func benchDecodeInPlace(d *Decoder, sample []byte, e *timeline.Event) error {
	if len(sample) < RawEventSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(sample), RawEventSize)
	}
	r := (*rawEvent)(unsafe.Pointer(unsafe.SliceData(sample)))
	if r.Type < uint8(timeline.EventState) || r.Type > uint8(timeline.EventError) {
		return fmt.Errorf("%w: unknown type %d", ErrMalformed, r.Type)
	}
	switch r.Family {
	case afInet:
		e.LAddr = netip.AddrFrom4([4]byte(r.Saddr[:4]))
		e.RAddr = netip.AddrFrom4([4]byte(r.Daddr[:4]))
	case afInet6:
		e.LAddr = netip.AddrFrom16(r.Saddr)
		e.RAddr = netip.AddrFrom16(r.Daddr)
	default:
		return fmt.Errorf("%w: address family %d", ErrMalformed, r.Family)
	}
	e.Time = int64(r.TsNs) + d.MonoToUnix
	e.Cookie = r.Cookie
	e.Type = timeline.EventType(r.Type)
	e.OldState = timeline.State(r.Oldstate)
	e.NewState = timeline.State(r.Newstate)
	e.LPort, e.RPort = r.Sport, r.Dport
	e.NetNS = r.Netns
	e.PID = r.Pid
	e.UID = r.Uid
	e.Comm = d.comm(&r.Comm)
	e.Cgroup = r.Cgroup
	e.BytesAcked, e.BytesReceived = r.Fig.Base.BytesAcked, r.Fig.Base.BytesReceived
	e.SRTT = r.Fig.Base.SrttUs >> 3
	e.TotalRetrans = r.Fig.Base.TotalRetrans
	e.SockDead = r.Flags&uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD) != 0
	e.SockDone = r.Flags&uint8(tcptraceEventFlagsEVENT_F_SOCK_DONE) != 0
	e.NoSocket = r.Flags&uint8(tcptraceEventFlagsEVENT_F_NO_SOCKET) != 0
	e.OwnerSeen = r.Flags&uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN) != 0
	e.Errno, e.RSTReason = 0, ""
	switch e.Type {
	case timeline.EventRSTSent:
		if r.Flags&uint8(tcptraceEventFlagsEVENT_F_REASON) != 0 {
			e.RSTReason = d.rstReason(r.Reason)
		}
	case timeline.EventState, timeline.EventError:
		e.Errno = r.Reason
	}
	return nil
}
