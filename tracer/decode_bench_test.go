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
	"math/rand/v2"
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
	samples [][]byte // records, as ringbuf.Record.RawSample
	events  int      // the events they hold
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
		// Each event sent at once: a record of one entry.
		r := rawRecord{
			Kind:   kindEvents,
			N:      1,
			Netns:  4026532177,
			Uid:    0,
			Family: afInet,
			// 2 cookies per pair: client 2p+1, server 2p+2.
			Cookie: uint64(2*s.pair + 1),
			Cgroup: 7418,
		}
		ent := &r.Ev[0]
		*ent = rawEntry{TsNs: ts, Type: uint8(timeline.EventState), Oldstate: uint8(seq.from), Newstate: uint8(seq.to),
			Flags: seq.flags | uint8(tcptraceEventFlagsEVENT_F_OWNER)}
		if v6 {
			r.Family = afInet6
			r.Saddr[15], r.Daddr[15] = 1, 1
		} else {
			r.Saddr = [16]uint8{127, 0, 0, 1}
			r.Daddr = [16]uint8{127, 0, 0, 1}
		}
		if seq.server {
			r.Cookie++
			ent.Sport, r.Dport = 8080, cliPort
			r.Pid, r.Comm = 4242, srvComm
		} else {
			ent.Sport, r.Dport = cliPort, 8080
			if seq.from == timeline.StateClose && seq.to == timeline.StateSynSent {
				ent.Sport = 0 // connect() reports SYN_SENT before the port is chosen
			}
			r.Pid, r.Comm = 777, cliComm
		}
		switch seq.to {
		case timeline.StateEstablished:
			r.Established.SrttUs, r.Established.Jiffies = 8*25, 4294667296
		case timeline.StateClose:
			r.Closed.Base.BytesAcked, r.Closed.Base.BytesReceived = 78, 140
			r.Closed.Base.SrttUs, r.Closed.Base.Jiffies = 8*25, 4294667296
		}
		buf := bytes.Clone(recordSample(&r))
		st.events++
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

// queued regroups the stream as the kernel sends it by default: each
// socket's entries in one record, sent at its CLOSE (all of the stream's
// sockets close), with the figures of its ESTABLISHED and CLOSE entries.
func (s *benchStream) queued() *benchStream {
	out := &benchStream{pairs: s.pairs, gapNs: s.gapNs, events: s.events}
	open := map[uint64]*rawRecord{}
	for _, smp := range s.samples {
		var one rawRecord
		if err := readRecord(smp, &one); err != nil {
			panic(err)
		}
		r := open[one.Cookie]
		if r == nil {
			r = &rawRecord{}
			*r = one
			r.N = 0
			open[one.Cookie] = r
		}
		r.Ev[r.N] = one.Ev[0]
		r.N++
		switch one.Ev[0].Newstate {
		case uint8(timeline.StateEstablished):
			r.Established = one.Established
		case uint8(timeline.StateClose):
			r.Closed = one.Closed
			out.samples = append(out.samples, bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(r)), RecordSize)))
			delete(open, one.Cookie)
		}
	}
	return out
}

// contiguous returns the samples laid out back to back in one buffer, as in
// the ring buffer's mmap (8-byte header + 8-byte-aligned sample).
func (s *benchStream) contiguous() ([]byte, [][]byte) {
	const hdr = 8
	stride := hdr + (RecordSize+7)&^7
	buf := make([]byte, stride*len(s.samples))
	out := make([][]byte, len(s.samples))
	for i, smp := range s.samples {
		off := i*stride + hdr
		copy(buf[off:], smp)
		out[i] = buf[off : off+len(smp) : off+len(smp)]
	}
	return buf, out
}

func reportRate(b *testing.B, events int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(events)/s, "events/s")
	}
}

func BenchmarkDecode(b *testing.B) {
	b.Logf("RecordSize=%d sizeof(timeline.Event)=%d", RecordSize, unsafe.Sizeof(timeline.Event{}))
	discard := func(*timeline.Event) {}
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
				if err := d.Decode(samples[i%len(samples)], &ev, discard); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N)
		})
	}

	// The RST-with-reason path: a reason name the kernel's BTF lacks is
	// formatted with fmt.Sprintf, per event.
	b.Run("rst_unknown_reason", func(b *testing.B) {
		r := rawRecord{Kind: kindEvents, N: 1, Cookie: 9, Family: afInet}
		r.Ev[0] = rawEntry{Type: uint8(timeline.EventRSTSent), Newstate: uint8(timeline.StateEstablished),
			Flags: uint8(tcptraceEventFlagsEVENT_F_REASON), Reason: 77}
		sample := bytes.Clone(recordSample(&r))
		d := Decoder{RSTReasons: []string{"NOT_SPECIFIED"}}
		var ev timeline.Event
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = d.Decode(sample, &ev, discard)
		}
		reportRate(b, b.N)
	})
}
