package timeline

import (
	"testing"
)

// EachLive shows the open connections with their state and since when:
// the unpacked ones, the packed ones at rest, the followed orphans; not
// those closed and waiting out CloseGrace.
func TestEachLive(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PackAfter = 1000 * ms
	cfg.ScansNetNS = func(ns uint32) bool { return ns == 1 }
	c := New(cfg, func(*Connection) {})
	dead := func(e *Event) { e.SockDead = true }
	for _, e := range []Event{
		// 1: a server in CLOSE_WAIT since 100 ms.
		serverSide(state(0, 1, StateListen, StateSynRecv)),
		serverSide(state(0, 1, StateSynRecv, StateEstablished)),
		serverSide(with(state(100, 1, StateEstablished, StateCloseWait), func(e *Event) { e.SockDone = true })),
		// 2: a client ESTABLISHED at 20 ms, packed once idle.
		state(10, 2, StateClose, StateSynSent),
		state(20, 2, StateSynSent, StateEstablished),
		// 3: an orphaned FIN_WAIT2 from 3 ms.
		state(0, 3, StateClose, StateSynSent),
		state(1, 3, StateSynSent, StateEstablished),
		state(2, 3, StateEstablished, StateFinWait1),
		with(state(3, 3, StateFinWait1, StateFinWait2), dead),
		with(state(3, 3, StateFinWait2, StateClose), dead),
		// 4: refused at 500 ms: closed, waiting out CloseGrace.
		state(499, 4, StateClose, StateSynSent),
		with(state(500, 4, StateSynSent, StateClose), func(e *Event) { e.Errno = 111 }),
	} {
		c.Add(&e)
	}
	c.Advance(baseTime + 100*ms) // the orphan's record out; 4 not yet
	c.Advance(baseTime + 600*ms - 1)
	var lc LiveConn
	c.Add(&Event{}) // a no-op: cookie 0
	if c.LiveConn(4, &lc) && lc.State != StateClose {
		t.Fatalf("LiveConn(4) = %+v", lc)
	}
	c.Advance(baseTime + 1500*ms) // 2 packed; 4 out
	if c.Packed() != 1 {
		t.Fatalf("packed %d, want 1 (the idle client)", c.Packed())
	}
	got := map[uint64]LiveConn{}
	c.EachLive(func(lc *LiveConn) { got[lc.Cookie] = *lc })
	want := map[uint64]struct {
		st    State
		since int64
		comm  string
		role  Role
	}{
		1: {StateCloseWait, 100, "nginx", RoleServer},
		2: {StateEstablished, 20, "curl", RoleClient},
		3: {StateFinWait2, 3, "curl", RoleUnknown},
	}
	if len(got) != len(want) {
		t.Fatalf("EachLive saw %v, want cookies 1, 2 and 3", got)
	}
	for cookie, w := range want {
		g := got[cookie]
		if g.State != w.st || g.Since != baseTime+w.since*ms || g.Comm != w.comm || g.Role != w.role || g.PID != 42 {
			t.Errorf("cookie %d: %+v, want %v since %d ms, %s, %v", cookie, g, w.st, w.since, w.comm, w.role)
		}
	}
	if c.LiveConn(2, &lc) {
		t.Errorf("LiveConn(2) found a packed connection: it must not unpack it")
	}
	if !c.LiveConn(1, &lc) || lc.State != StateCloseWait {
		t.Errorf("LiveConn(1) = %+v", lc)
	}
	if c.Packed() != 1 {
		t.Errorf("EachLive or LiveConn changed the table: packed %d", c.Packed())
	}
}
