package timeline

import (
	"net/netip"
	"testing"
)

// Connections at rest that cannot be packed (here IPv6) are looked at once
// per PackAfter, not at every Advance: a host with many of them must not
// pay a walk of its whole table ten times a second.
func TestUnpackableLookedAtOncePerPackAfter(t *testing.T) {
	cfg := DefaultConfig()
	c := New(cfg, func(*Connection) {})
	lo6 := netip.MustParseAddr("::1")
	const t0 = int64(1_700_000_000) * 1e9
	for cookie := uint64(1); cookie <= 100; cookie++ {
		for _, e := range []Event{
			{Time: t0, Cookie: cookie, Type: EventState, OldState: StateClose, NewState: StateSynSent},
			{Time: t0 + 1e3, Cookie: cookie, Type: EventState, OldState: StateSynSent, NewState: StateEstablished},
		} {
			e.LAddr, e.RAddr, e.LPort, e.RPort = lo6, lo6, uint16(40000+cookie), 8080
			c.Add(&e)
		}
	}
	t1 := t0 + cfg.PackAfter + 1e3
	c.Advance(t1)
	if c.Packed() != 0 || c.Live() != 100 {
		t.Fatalf("packed %d live %d, want 0 and 100", c.Packed(), c.Live())
	}
	c.Advance(t1 + 1e9) // within PackAfter of the last look: none looked at
	for conn := c.open.head; conn != nil; conn = conn.next {
		if conn.packChecked != t1 {
			t.Fatalf("cookie %d looked at again at %d, last at %d", conn.Cookie, conn.packChecked, t1)
		}
	}
	c.Advance(t1 + cfg.PackAfter) // a PackAfter later: all of them once
	for conn := c.open.head; conn != nil; conn = conn.next {
		if conn.packChecked != t1+cfg.PackAfter {
			t.Fatalf("cookie %d last looked at %d, want %d", conn.Cookie, conn.packChecked, t1+cfg.PackAfter)
		}
	}
}

// A state number that does not fit in the packed record's 4 bits (the
// decoder passes whatever the kernel wrote) keeps the connection unpacked.
func TestOutOfRangeStateNotPacked(t *testing.T) {
	conn := &Connection{Cookie: 1, Start: 10, End: 10, lastSyn: 10, Handshake: -1, Role: RoleUnknown, Partial: true,
		LAddr: netip.MustParseAddr("127.0.0.1"), RAddr: netip.MustParseAddr("127.0.0.1"),
		States: []State{State(200), StateEstablished},
		Steps:  []Step{{Time: 10, Kind: StepState, From: State(3), To: StateEstablished}}}
	if canPack(conn) {
		t.Fatal("a connection with state 200 would be packed, and come back as state 8")
	}
	conn.States[0] = StateSynRecv
	if !canPack(conn) {
		t.Fatal("the same connection with valid states is not packable")
	}
}
