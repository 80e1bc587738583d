package timeline

import (
	"net/netip"
	"slices"
	"testing"
)

// A follow scan walks the namespaces with followed sockets only: it
// follows them as a full scan does, and leaves the TIME_WAIT counts of the
// last full scan alone.
func TestFollowScan(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ScansNetNS = func(uint32) bool { return true }
	c := New(cfg, func(*Connection) {})
	dead := func(e *Event) { e.SockDead = true }
	for _, o := range []struct {
		cookie uint64
		ns     uint32
	}{{10, 1}, {20, 2}, {21, 2}} {
		cookie, ns := o.cookie, o.ns
		for _, e := range []Event{
			state(0, cookie, StateEstablished, StateFinWait1),
			with(state(1, cookie, StateFinWait1, StateFinWait2), dead),
			with(state(1, cookie, StateFinWait2, StateClose), dead),
		} {
			e.NetNS = ns
			c.Add(&e)
		}
	}
	c.Flush()
	var followed []uint32
	c.FollowedNetNS(func(ns uint32) { followed = append(followed, ns) })
	slices.Sort(followed)
	if c.Orphans() != 3 || !slices.Equal(followed, []uint32{1, 2}) {
		t.Fatalf("orphans %d in namespaces %v, want 3 in [1 2]", c.Orphans(), followed)
	}
	tw := func(cookie uint64, ns uint32, sub State) Socket {
		return Socket{Cookie: cookie, State: StateTimeWait, Substate: sub, LAddr: lo, RAddr: lo, LPort: cliPort, RPort: srvPort, NetNS: ns}
	}
	scan := func(begin func(), socks ...Socket) {
		begin()
		for i := range socks {
			c.ScanSocket(&socks[i])
		}
		c.EndScan(baseTime + 100*ms)
	}
	if _, _, ok := c.TimeWait(1); ok {
		t.Fatal("TIME_WAIT counts before any full scan")
	}
	scan(c.BeginScan, tw(10, 1, StateFinWait2), tw(20, 2, StateFinWait2), tw(21, 2, StateFinWait2), tw(99, 3, StateTimeWait))
	total, top, ok := c.TimeWait(1)
	if !ok || total != 4 || len(top) != 1 || top[0].Count != 1 {
		t.Fatalf("full scan: TIME_WAIT total %d top %+v", total, top)
	}
	// The orphan of namespace 1 is gone; namespace 3 is not walked.
	scan(c.BeginFollowScan, tw(20, 2, StateFinWait2), tw(21, 2, StateFinWait2))
	if c.Orphans() != 2 {
		t.Errorf("after a follow scan: %d orphans, want 2", c.Orphans())
	}
	if total2, top2, ok := c.TimeWait(1); !ok || total2 != total || !slices.Equal(top2, top) {
		t.Errorf("a follow scan changed the TIME_WAIT counts: total %d top %+v", total2, top2)
	}
}

// A server's TIME_WAIT sockets are counted by the local address and port
// its clients came to, not one by one by their ephemeral ports; a
// client's by the remote endpoint it went to.
func TestTimeWaitServerSideByLocalPort(t *testing.T) {
	c := New(DefaultConfig(), func(*Connection) {})
	listener := serverSide(state(0, 1, StateClose, StateListen))
	listener.RAddr, listener.RPort = netip.IPv4Unspecified(), 0
	c.Add(&listener)
	other := netip.MustParseAddr("10.0.0.2")
	var socks []Socket
	for i := range 3 {
		// Served on 127.0.0.1:8080 to three clients.
		socks = append(socks, Socket{Cookie: uint64(10 + i), State: StateTimeWait, Substate: StateTimeWait,
			LAddr: lo, LPort: srvPort, RAddr: lo, RPort: cliPort + uint16(i), NetNS: 1})
	}
	for i := range 2 {
		// This host's client to 10.0.0.2:80, twice.
		socks = append(socks, Socket{Cookie: uint64(20 + i), State: StateTimeWait, Substate: StateTimeWait,
			LAddr: lo, LPort: cliPort + 10 + uint16(i), RAddr: other, RPort: 80, NetNS: 1})
	}
	// The same port in another namespace has no listener: a client's.
	socks = append(socks, Socket{Cookie: 30, State: StateTimeWait, Substate: StateTimeWait,
		LAddr: lo, LPort: srvPort, RAddr: lo, RPort: 9999, NetNS: 2})
	c.BeginScan()
	for i := range socks {
		c.ScanSocket(&socks[i])
	}
	c.EndScan(baseTime + 100*ms)
	total, top, ok := c.TimeWait(5)
	want := []EndpointCount{
		{Endpoint{Addr: lo, Port: srvPort, Local: true}, 3},
		{Endpoint{Addr: other, Port: 80}, 2},
		{Endpoint{Addr: lo, Port: 9999}, 1},
	}
	if !ok || total != 6 || !slices.Equal(top, want) {
		t.Errorf("TIME_WAIT total %d top %+v, want 6 %+v", total, top, want)
	}
	// A local and a remote endpoint alike in all but Local: local first,
	// whatever the map's order.
	for range 20 {
		c.BeginScan()
		for _, s := range []Socket{
			{Cookie: 40, State: StateTimeWait, Substate: StateTimeWait, LAddr: lo, LPort: srvPort, RAddr: lo, RPort: 1, NetNS: 1},
			{Cookie: 41, State: StateTimeWait, Substate: StateTimeWait, LAddr: lo, LPort: 2, RAddr: lo, RPort: srvPort, NetNS: 1},
		} {
			c.ScanSocket(&s)
		}
		c.EndScan(baseTime + 200*ms)
		if _, top, _ := c.TimeWait(2); len(top) != 2 || !top[0].Local || top[1].Local {
			t.Fatalf("order %+v, want the local endpoint first", top)
		}
	}
}
