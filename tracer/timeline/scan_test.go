package timeline

import (
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
