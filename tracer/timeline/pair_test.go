package timeline

import (
	"net/netip"
	"testing"
)

// released is what a Pairer let out, copied (its records are only valid
// during the call).
type released struct {
	c, peer *Connection
}

func newTestPairer(cfg PairConfig) (*Pairer, *[]released) {
	var out []released
	p := NewPairer(cfg, func(c, peer *Connection) {
		r := released{c: c.Clone()}
		if peer != nil {
			r.peer = peer.Clone()
		}
		out = append(out, r)
	})
	return p, &out
}

// record makes a finished record from local to remote ("addr:port"),
// alive from start to end (ms after baseTime).
func record(cookie uint64, local, remote string, netns uint32, start, end int64, states ...State) *Connection {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	return &Connection{Cookie: cookie, LAddr: l.Addr(), LPort: l.Port(), RAddr: r.Addr(), RPort: r.Port(),
		NetNS: netns, Role: RoleClient, PID: uint32(cookie), Comm: "p" + string(rune('0'+cookie%10)),
		Start: baseTime + start*ms, End: baseTime + end*ms, States: states, Handshake: -1}
}

var closedStates = []State{StateSynSent, StateEstablished, StateFinWait1, StateFinWait2, StateTimeWait}

func closedRecord(cookie uint64, local, remote string, netns uint32, start, end int64) *Connection {
	return record(cookie, local, remote, netns, start, end, closedStates...)
}

func TestPairBothEnds(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	cli := closedRecord(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 10)
	srv := closedRecord(2, "127.0.0.1:8080", "127.0.0.1:40000", 7, 1, 12)
	srv.Role = RoleServer
	p.Add(cli)
	if len(*out) != 0 || p.Held() != 1 {
		t.Fatalf("the client was let out (%d) or not held (%d) before its peer came", len(*out), p.Held())
	}
	cli.Cookie, cli.Comm = 99, "recycled" // the correlator reuses its record after emit
	p.Add(srv)
	if len(*out) != 1 || (*out)[0].peer == nil {
		t.Fatalf("want one pair out, got %+v", *out)
	}
	a, b := (*out)[0].c, (*out)[0].peer
	if a.Cookie != 1 || b.Cookie != 2 {
		t.Errorf("pair out as %d, %d; want the held client 1 first, then 2", a.Cookie, b.Cookie)
	}
	if a.PeerCookie != 2 || a.PeerPID != 2 || a.PeerComm != "p2" || b.PeerCookie != 1 || b.PeerPID != 1 || b.PeerComm != "p1" {
		t.Errorf("peer fields: client %d/%d/%q, server %d/%d/%q", a.PeerCookie, a.PeerPID, a.PeerComm,
			b.PeerCookie, b.PeerPID, b.PeerComm)
	}
	if a.Comm != "p1" || len(a.States) != len(closedStates) {
		t.Errorf("the held copy changed with the correlator's record: %q %v", a.Comm, a.States)
	}
	if p.Paired() != 2 || p.Held() != 0 {
		t.Errorf("paired %d held %d, want 2 and 0", p.Paired(), p.Held())
	}
}

func TestPairNoPeerPossibleGoesAtOnce(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	refused := record(1, "127.0.0.1:40000", "127.0.0.1:9", 7, 0, 1, StateSynSent, StateClose)
	timeout := record(2, "10.0.0.1:40001", "10.0.0.2:80", 7, 0, 7000, StateSynSent, StateClose)
	listener := record(3, "0.0.0.0:80", "0.0.0.0:0", 7, 0, 1, StateListen, StateClose)
	listener.Role = RoleListener
	noPort := record(4, "127.0.0.1:0", "127.0.0.1:80", 7, 0, 1, StateEstablished, StateClose)
	self := record(5, "127.0.0.1:5000", "127.0.0.1:5000", 7, 0, 1, StateEstablished, StateClose)
	for i, c := range []*Connection{refused, timeout, listener, noPort, self} {
		p.Add(c)
		if len(*out) != i+1 || (*out)[i].peer != nil || p.Held() != 0 {
			t.Fatalf("record %d (%v) held or paired: out %d held %d", c.Cookie, c.States, len(*out), p.Held())
		}
	}
}

func TestPairWaitIsBounded(t *testing.T) {
	p, out := newTestPairer(PairConfig{Wait: 500 * ms, MaxHeld: 10})
	p.Add(closedRecord(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 10))
	p.Advance(baseTime + 509*ms)
	if len(*out) != 0 {
		t.Fatalf("let out before the wait was over: %+v", *out)
	}
	p.Advance(baseTime + 510*ms)
	if len(*out) != 1 || (*out)[0].peer != nil || (*out)[0].c.PeerCookie != 0 {
		t.Fatalf("want the record out unpaired once the wait is over, got %+v", *out)
	}
	if p.Held() != 0 || p.Paired() != 0 {
		t.Errorf("held %d paired %d after the wait", p.Held(), p.Paired())
	}
	// Its peer coming late finds nothing to pair with, and waits in turn.
	p.Add(closedRecord(2, "127.0.0.1:8080", "127.0.0.1:40000", 7, 1, 600))
	p.Flush()
	if len(*out) != 2 || (*out)[1].peer != nil || p.Paired() != 0 {
		t.Errorf("the late peer was paired: %+v", *out)
	}
}

func TestPairHeldAreBounded(t *testing.T) {
	p, out := newTestPairer(PairConfig{Wait: 1e9, MaxHeld: 2})
	for i := uint64(1); i <= 3; i++ {
		p.Add(closedRecord(i, "127.0.0.1:4000"+string(rune('0'+i)), "127.0.0.1:8080", 7, 0, 10))
	}
	if p.Held() != 2 || len(*out) != 1 || (*out)[0].c.Cookie != 1 {
		t.Fatalf("want the oldest out and two held, got held %d out %+v", p.Held(), *out)
	}
	p.Flush()
	if p.Held() != 0 || len(*out) != 3 || (*out)[1].c.Cookie != 2 || (*out)[2].c.Cookie != 3 {
		t.Fatalf("Flush: held %d, out %+v", p.Held(), *out)
	}
}

// TIME_WAIT reuse: the same 4-tuple twice in a row. Each end pairs with
// the end it lived with, whatever order the records come in.
func TestPairTupleReused(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	first := closedRecord(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 100)
	second := closedRecord(3, "127.0.0.1:40000", "127.0.0.1:8080", 7, 200, 300)
	secondSrv := closedRecord(4, "127.0.0.1:8080", "127.0.0.1:40000", 7, 201, 301)
	firstSrv := closedRecord(2, "127.0.0.1:8080", "127.0.0.1:40000", 7, 1, 150)
	p.Add(first)
	p.Add(second) // same side: no pair
	if p.Held() != 2 {
		t.Fatalf("two ends of one side paired: held %d, out %+v", p.Held(), *out)
	}
	p.Add(secondSrv)
	p.Add(firstSrv)
	if len(*out) != 2 || p.Held() != 0 {
		t.Fatalf("want two pairs, got %d out, %d held", len(*out), p.Held())
	}
	for _, r := range *out {
		if r.peer == nil || r.c.Cookie+1 != r.peer.Cookie {
			t.Errorf("wrong pair: %d with %+v", r.c.Cookie, r.peer)
		}
	}
}

// Two candidates that both overlap: the nearest start wins.
func TestPairNearestInTime(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	p.Add(closedRecord(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 500))
	p.Add(closedRecord(3, "127.0.0.1:40000", "127.0.0.1:8080", 7, 400, 900))
	p.Add(closedRecord(4, "127.0.0.1:8080", "127.0.0.1:40000", 7, 401, 901))
	if len(*out) != 1 || (*out)[0].c.Cookie != 3 {
		t.Fatalf("want 4 paired with 3, got %+v", *out)
	}
}

func TestPairAcrossNamespaces(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	// A veth pair: the same 4-tuple seen from two namespaces.
	p.Add(closedRecord(1, "10.200.0.1:40000", "10.200.0.2:80", 7, 0, 10))
	p.Add(closedRecord(2, "10.200.0.2:80", "10.200.0.1:40000", 8, 1, 11))
	if len(*out) != 1 || (*out)[0].peer == nil {
		t.Fatalf("veth ends not paired: %+v", *out)
	}
	// Loopback in two namespaces: two unrelated connections.
	p.Add(closedRecord(3, "127.0.0.1:40000", "127.0.0.1:80", 7, 0, 10))
	p.Add(closedRecord(4, "127.0.0.1:80", "127.0.0.1:40000", 8, 1, 11))
	if p.Held() != 2 {
		t.Fatalf("loopback ends of two namespaces paired: %+v", *out)
	}
	// A dual-stack server sees its IPv4 client as ::ffff:a.b.c.d.
	p.Add(closedRecord(5, "127.0.0.1:40001", "127.0.0.1:80", 7, 0, 10))
	p.Add(closedRecord(6, "[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]:40001", 7, 1, 11))
	if len(*out) != 2 || (*out)[1].peer == nil {
		t.Fatalf("dual-stack ends not paired: %+v", *out)
	}
}

// Both ends through the real correlator: a client and its server on
// loopback, as the kernel reports them.
func TestPairFromCorrelator(t *testing.T) {
	p, out := newTestPairer(DefaultPairConfig())
	c := New(DefaultConfig(), p.Add)
	evs := []Event{
		state(0, 1, StateClose, StateSynSent),
		serverSide(state(1, 2, StateSynRecv, StateEstablished)),
		state(1, 1, StateSynSent, StateEstablished),
		state(5, 1, StateEstablished, StateFinWait1),
		serverSide(state(5, 2, StateEstablished, StateCloseWait)),
		state(5, 1, StateFinWait1, StateFinWait2),
		serverSide(state(6, 2, StateCloseWait, StateLastAck)),
		with(state(6, 1, StateFinWait2, StateClose), func(e *Event) { e.SockDone, e.SockDead = true, true }),
		serverSide(state(6, 2, StateLastAck, StateClose)),
	}
	for i := range evs {
		c.Add(&evs[i])
	}
	c.Advance(baseTime + 100*ms)
	if len(*out) != 1 || (*out)[0].peer == nil {
		t.Fatalf("want the two ends out as a pair, got %+v", *out)
	}
	r := (*out)[0]
	if r.c.Role != RoleClient || r.peer.Role != RoleServer || r.c.PeerComm != "nginx" || r.peer.PeerComm != "curl" {
		t.Errorf("pair: %s (peer %s) and %s (peer %s)", r.c.Role, r.c.PeerComm, r.peer.Role, r.peer.PeerComm)
	}
}

// Holding and pairing costs no allocation once the pool has grown.
func TestPairAllocations(t *testing.T) {
	p := NewPairer(DefaultPairConfig(), func(c, peer *Connection) {})
	cli := closedRecord(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 10)
	srv := closedRecord(2, "127.0.0.1:8080", "127.0.0.1:40000", 7, 1, 12)
	for range 10 {
		p.Add(cli)
		p.Add(srv)
	}
	if n := testing.AllocsPerRun(100, func() {
		p.Add(cli)
		p.Add(srv)
	}); n != 0 {
		t.Errorf("%v allocations a pair, want 0", n)
	}
}
