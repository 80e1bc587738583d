package tracer

// FuzzQueue: a socket's events reach the loader in records (struct record),
// either each at once as a record of one entry (with --events, and for
// what the kernel does not queue) or queued in the socket's storage and
// sent as one record of several (the default). For any sequence of one
// socket's events, as the kernel side would send it under either flush
// policy, the loader must give the correlator the same events, and so the
// same connection record. And whatever the bytes, Decode returns events or
// ErrMalformed, never panics.
//
//	go test -run '^$' -fuzz FuzzQueue -fuzztime 60s ./tracer/

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// One entry is 6 fuzz bytes:
//
//	[0] bits 2-0: type 1 + value%6 but SYN+ACK retransmit (never queued:
//	    it is the listener's); bit 3 SOCK_DEAD, 4 SOCK_DONE, 5 owner seen,
//	    6 owner known, 7 RST reason present
//	[1] low nibble: old state, high nibble: new state
//	[2] bit 0-1: local port choice (0 before connect() picks one)
//	[3] reason (sk_err, errno or RST reason)
//	[4:6] time delta, µs
const fuzzEntrySize = 6

var fuzzLocalPorts = [4]uint16{0, 40000, 40001, 0}

// fuzzSocket is what the kernel reads from the socket itself: the same for
// every event of one connection.
type fuzzSocket struct {
	cookie   uint64
	family   uint16
	saddr    [16]uint8
	daddr    [16]uint8
	dport    uint16
	netns    uint32
	pid, uid uint32
	comm     [16]int8
	cgroup   uint64
	// What tcp_sock says at ESTABLISHED and at CLOSE (struct est_figures
	// and tcp_figures).
	established tcptraceEstFigures
	closed      tcptraceTcpFigures
}

// Seed entries, in the fuzz encoding above: types, flags, and states as
// new<<4 | old.
const (
	fzState, fzRetransmit, fzRSTSent, fzRSTReceived, fzError = 0, 1, 3, 4, 5
	fzDead, fzDone, fzOwnerSeen, fzOwner, fzReason           = 8, 16, 32, 64, 128
)

func FuzzQueue(f *testing.F) {
	// A client that connects, retries its SYN, closes first.
	f.Add(byte(4), []byte{
		fzState | fzOwner | fzOwnerSeen, 0x27, 0, 0, 0, 0, // CLOSE -> SYN_SENT, port 0
		fzRetransmit | fzOwner, 0x20, 1, 0, 0x10, 0x27, // SYN retransmit in SYN_SENT
		fzState | fzOwner, 0x12, 1, 0, 0x20, 0, // SYN_SENT -> ESTABLISHED
		fzState | fzOwner | fzOwnerSeen, 0x41, 1, 0, 5, 0, // ESTABLISHED -> FIN_WAIT1
		fzState | fzOwner, 0x54, 1, 0, 5, 0, // FIN_WAIT1 -> FIN_WAIT2
		fzState | fzOwner | fzDead | fzDone, 0x75, 3, 0, 1, 0, // FIN_WAIT2 -> CLOSE
	})
	// A server reset by its peer, and a RST sent after its CLOSE.
	f.Add(byte(6), []byte{
		fzState, 0x3a, 1, 0, 0, 0, // LISTEN -> SYN_RECV
		fzState, 0x13, 1, 0, 1, 0, // SYN_RECV -> ESTABLISHED
		fzRSTReceived, 0x10, 1, 0, 1, 0,
		fzError, 0x10, 1, 104, 0, 0, // ECONNRESET
		fzState, 0x71, 0, 104, 0, 0, // ESTABLISHED -> CLOSE
		fzRSTSent | fzReason, 0x70, 0, 2, 0, 0,
	})
	// The decoder learns the tick rate from the figures' jiffies a second
	// apart: a connection closed twice over two seconds (found by CI), with
	// busy time known only once the rate is.
	var slowClose []byte
	slowClose = append(slowClose, fzState|fzOwner, 0x12, 1, 0, 0, 0) // SYN_SENT -> ESTABLISHED
	for range 9 {
		slowClose = append(slowClose, fzRetransmit, 0x10, 1, 0, 0xff, 0xff) // 65 ms apart
	}
	slowClose = append(slowClose, fzState, 0x71, 1, 0, 0, 0) // ESTABLISHED -> CLOSE, 0.6 s in
	for range 9 {
		slowClose = append(slowClose, fzRetransmit, 0x70, 1, 0, 0xff, 0xff)
	}
	slowClose = append(slowClose, fzState, 0x71, 1, 0, 0, 0) // and again, 1.2 s in
	f.Add(byte(4), slowClose)
	f.Fuzz(func(t *testing.T, sock byte, data []byte) {
		d := Decoder{MonoToUnix: 1_700_000_000e9, RSTReasons: fuzzRSTReasons}
		checkDecodeAnyBytes(t, &d, data)

		s := fuzzSocketFrom(sock)
		entries := fuzzEntries(data)
		if len(entries) == 0 {
			return
		}
		// Each path has its own decoder, as each tracer does: the decoder
		// learns the tick rate from what it has decoded, so one shared
		// would know more on the second path than on the first.
		fresh := func() *Decoder { return &Decoder{MonoToUnix: d.MonoToUnix, RSTReasons: d.RSTReasons} }
		atOnce := atOnceEvents(t, fresh(), &s, entries)
		queued := queuedEvents(t, fresh(), &s, entries)
		if len(atOnce) != len(queued) {
			t.Fatalf("%d events sent at once, %d queued", len(atOnce), len(queued))
		}
		for i := range atOnce {
			if a, b := atOnce[i], queued[i]; a != b {
				t.Fatalf("event %d differs:\nat once %+v\nqueued  %+v", i, a, b)
			}
		}
		a, b := correlate(atOnce), correlate(queued)
		if a != b {
			t.Fatalf("records differ:\nat once %s\nqueued  %s", a, b)
		}
	})
}

// checkDecodeAnyBytes: bytes that are not a record are refused, and so is
// a record cut short of its entries.
func checkDecodeAnyBytes(t *testing.T, d *Decoder, data []byte) {
	t.Helper()
	var e timeline.Event
	sample := make([]byte, RecordSize)
	copy(sample, data)
	n := 0
	err := d.Decode(sample, &e, func(*timeline.Event) { n++ })
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v is not ErrMalformed", err)
	}
	if err != nil {
		return
	}
	if n == 0 || n > maxEntries {
		t.Fatalf("a record decoded into %d events", n)
	}
	if d.Decode(sample[:recordHead+n*entrySize-1], &e, func(*timeline.Event) {}) == nil {
		t.Fatal("a record cut short of its entries decoded")
	}
}

func fuzzSocketFrom(b byte) fuzzSocket {
	s := fuzzSocket{cookie: 4242, netns: 4026531840, dport: 8080, uid: 1000, cgroup: 77, pid: 812,
		comm: fuzzComm("curl"), family: afInet}
	if b&1 != 0 {
		s.family = afInet6
		s.saddr[15], s.daddr[15] = 1, 1
	} else {
		s.saddr = [16]uint8{127, 0, 0, 1}
		s.daddr = [16]uint8{127, 0, 0, 2}
	}
	if b&2 != 0 {
		s.cgroup = 0
	}
	s.established.SrttUs, s.established.BytesAcked, s.established.Jiffies = 8*50, 1, 4294667296
	s.established.SndUna, s.established.RcvNxt = 1001, uint32(b)<<20
	s.closed.Base = s.established
	s.closed.Base.SrttUs, s.closed.Base.BytesAcked, s.closed.Base.BytesReceived = 8*40, 1000, 2000
	s.closed.Base.TotalRetrans, s.closed.Base.Jiffies = uint32(b>>4), 4294667296+uint64(b)
	s.closed.WriteSeq, s.closed.Cwnd, s.closed.Busy, s.closed.RwndLimited = 2001, 10, uint32(b), uint32(b>>1)
	return s
}

func fuzzEntries(data []byte) []rawEntry {
	var out []rawEntry
	ts := uint64(1e9)
	for len(data) >= fuzzEntrySize && len(out) < 64 {
		b := data[:fuzzEntrySize]
		data = data[fuzzEntrySize:]
		typ := 1 + b[0]&7%6
		if typ == uint8(timeline.EventSynAckRetransmit) {
			typ = uint8(timeline.EventRetransmit)
		}
		flags := uint8(0)
		for bit, f := range map[uint8]tcptraceEventFlags{3: tcptraceEventFlagsEVENT_F_SOCK_DEAD, 4: tcptraceEventFlagsEVENT_F_SOCK_DONE,
			5: tcptraceEventFlagsEVENT_F_OWNER_SEEN, 6: tcptraceEventFlagsEVENT_F_OWNER, 7: tcptraceEventFlagsEVENT_F_REASON} {
			if b[0]&(1<<bit) != 0 {
				flags |= uint8(f)
			}
		}
		ts += (uint64(b[4]) | uint64(b[5])<<8) * 1000
		ent := rawEntry{TsNs: ts, Sport: fuzzLocalPorts[b[2]&3], Reason: uint16(b[3]),
			Type: typ, Newstate: b[1] >> 4, Flags: flags}
		if typ == uint8(timeline.EventState) {
			ent.Oldstate = b[1] & 15 // the other programs leave it 0
		}
		out = append(out, ent)
	}
	return out
}

// socketRecord fills what the kernel reads from the socket for a record of
// these entries (start_socket_record, fill_queue_record): the figures of
// an ESTABLISHED entry, and of a CLOSE entry (always the last).
func socketRecord(s *fuzzSocket, entries []rawEntry) rawRecord {
	r := rawRecord{Kind: kindEvents, N: uint8(len(entries)), Cookie: s.cookie, Saddr: s.saddr, Daddr: s.daddr,
		Netns: s.netns, Family: s.family, Dport: s.dport, Pid: s.pid, Comm: s.comm, Uid: s.uid, Cgroup: s.cgroup}
	copy(r.Ev[:], entries)
	for _, ent := range entries {
		if ent.Type == uint8(timeline.EventState) && ent.Newstate == uint8(timeline.StateEstablished) {
			r.Established = s.established
		}
	}
	if last := entries[len(entries)-1]; last.Type == uint8(timeline.EventState) && last.Newstate == uint8(timeline.StateClose) {
		r.Closed = s.closed
	}
	return r
}

// recordSample is a record as the ring buffer hands it: its head and its
// n entries (a record of one is reserved with room for one only).
func recordSample(r *rawRecord) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), recordHead+int(r.N)*entrySize)
}

// atOnceEvents: each entry sent at once, as a record of one entry (as
// send_state and emit_sock_event send it), then decoded.
func atOnceEvents(t *testing.T, d *Decoder, s *fuzzSocket, entries []rawEntry) []timeline.Event {
	t.Helper()
	var out []timeline.Event
	for i := range entries {
		r := socketRecord(s, entries[i:i+1])
		var e timeline.Event
		if err := d.Decode(recordSample(&r), &e, func(e *timeline.Event) { out = append(out, *e) }); err != nil {
			t.Fatalf("at once: %v", err)
		}
	}
	return out
}

// queuedEvents: the entries queued as queue_event does (a full queue is
// sent and the next entry starts a new one; a CLOSE entry is sent with its
// queue), each queue sent as one record, then decoded.
func queuedEvents(t *testing.T, d *Decoder, s *fuzzSocket, entries []rawEntry) []timeline.Event {
	t.Helper()
	var out []timeline.Event
	var queue []rawEntry
	send := func() {
		if len(queue) == 0 {
			return
		}
		r := socketRecord(s, queue)
		var e timeline.Event
		if err := d.Decode(unsafe.Slice((*byte)(unsafe.Pointer(&r)), RecordSize), &e,
			func(e *timeline.Event) { out = append(out, *e) }); err != nil {
			t.Fatalf("queued: %v", err)
		}
		queue = queue[:0]
	}
	for _, ent := range entries {
		if len(queue) == maxEntries {
			send()
		}
		queue = append(queue, ent)
		if ent.Type == uint8(timeline.EventState) && ent.Newstate == uint8(timeline.StateClose) {
			send()
		}
	}
	send()
	return out
}

// correlate feeds the events to a correlator and describes what it emits.
func correlate(events []timeline.Event) string {
	var out string
	c := timeline.New(timeline.DefaultConfig(), func(conn *timeline.Connection) {
		out += fmt.Sprintf("%d %s %s %v:%d>%v:%d pid=%d %q uid=%d cg=%d %s %s states=%v steps=%v bytes=%d/%d rtt=%d/%d retr=%d/%d/%d rst=%v/%v/%s errno=%d half=%v/%v;",
			conn.Cookie, conn.Role, conn.Outcome, conn.LAddr, conn.LPort, conn.RAddr, conn.RPort, conn.PID, conn.Comm,
			conn.UID, conn.Cgroup, conn.ClosedBy, conn.Reason, conn.States, conn.Steps, conn.BytesSent, conn.BytesReceived,
			conn.SRTT, conn.HandshakeRTT, conn.SynRetries, conn.Retransmits, conn.SegsRetrans, conn.RSTSent, conn.RSTReceived,
			conn.RSTReason, conn.Errno, conn.HalfClose, conn.HalfOpen)
	})
	for i := range events {
		c.Add(&events[i])
	}
	c.Flush()
	return out
}
