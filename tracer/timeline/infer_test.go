package timeline

import (
	"net/netip"
	"testing"
)

func seedSocket(cookie uint64, local, remote string, netns uint32, st State) *Socket {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	return &Socket{Cookie: cookie, State: st, LAddr: l.Addr(), LPort: l.Port(), RAddr: r.Addr(), RPort: r.Port(), NetNS: netns}
}

// The start-up scan, in the order a scan may list sockets: connections
// before the listeners they came from.
func TestInferRolesAfterTheWholeScan(t *testing.T) {
	var recs []*Connection
	c := New(DefaultConfig(), func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.SetSysctls(Sysctls{NetNS: 1, LocalPorts: [2]uint16{30000, 40000}})
	for _, s := range []*Socket{
		// Loopback, one namespace: server side listed first.
		seedSocket(1, "127.0.0.1:8080", "127.0.0.1:20001", 1, StateEstablished),
		seedSocket(2, "127.0.0.1:20001", "127.0.0.1:8080", 1, StateEstablished),
		// A veth pair: the server in namespace 2 on a wildcard listener.
		seedSocket(3, "10.200.0.1:20002", "10.200.0.2:80", 1, StateEstablished),
		seedSocket(4, "10.200.0.2:80", "10.200.0.1:20002", 2, StateCloseWait),
		// To a listener bound to its address in another namespace.
		seedSocket(5, "10.9.0.1:20003", "10.9.0.2:443", 1, StateEstablished),
		// From this namespace's ephemeral range (30000-40000 here).
		seedSocket(6, "10.0.0.1:35000", "192.0.2.1:22", 1, StateEstablished),
		// Namespace 3 has the kernel's default range, 32768-60999.
		seedSocket(7, "10.0.0.3:45000", "192.0.2.1:22", 3, StateEstablished),
		// Nothing tells.
		seedSocket(8, "10.0.0.1:20005", "192.0.2.1:5000", 1, StateEstablished),
		// A listener on an ephemeral port: its connections are servers.
		seedSocket(9, "10.0.0.1:35001", "192.0.2.1:50000", 1, StateEstablished),
		// Loopback of another namespace is another host's: no inference.
		seedSocket(10, "127.0.0.1:20006", "127.0.0.1:9090", 1, StateEstablished),
		// Definite from its state.
		seedSocket(11, "10.0.0.1:20007", "192.0.2.1:80", 1, StateSynSent),
		seedSocket(100, "0.0.0.0:8080", "0.0.0.0:0", 1, StateListen),
		seedSocket(101, "0.0.0.0:80", "0.0.0.0:0", 2, StateListen),
		seedSocket(102, "10.9.0.2:443", "0.0.0.0:0", 4, StateListen),
		seedSocket(103, "0.0.0.0:35001", "0.0.0.0:0", 1, StateListen),
		seedSocket(104, "127.0.0.1:9090", "0.0.0.0:0", 5, StateListen),
	} {
		c.Seed(baseTime, s, 0, "")
	}
	c.InferRoles()
	c.Flush()
	want := map[uint64]struct {
		role     Role
		inferred bool
	}{
		1: {RoleServer, true}, 2: {RoleClient, true}, 3: {RoleClient, true}, 4: {RoleServer, true},
		5: {RoleClient, true}, 6: {RoleClient, true}, 7: {RoleClient, true}, 8: {RoleUnknown, false},
		9: {RoleServer, true}, 10: {RoleUnknown, false}, 11: {RoleClient, false}, 100: {RoleListener, false},
	}
	for _, r := range recs {
		w, ok := want[r.Cookie]
		if !ok {
			continue
		}
		delete(want, r.Cookie)
		if r.Role != w.role || r.RoleInferred != w.inferred {
			t.Errorf("cookie %d %s:%d -> %s:%d: role %s inferred %v, want %s %v", r.Cookie, r.LAddr, r.LPort,
				r.RAddr, r.RPort, r.Role, r.RoleInferred, w.role, w.inferred)
		}
	}
	if len(want) != 0 {
		t.Errorf("no records for %v", want)
	}
}

// A seeded connection whose role was inferred keeps it through packing.
func TestRoleInferredSurvivesPacking(t *testing.T) {
	var recs []*Connection
	cfg := DefaultConfig()
	cfg.PackAfter = 1e9
	c := New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.Seed(baseTime, seedSocket(1, "127.0.0.1:40000", "10.1.1.1:80", 1, StateEstablished), 42, "curl")
	c.InferRoles()
	c.Advance(baseTime + 5e9)
	if c.Packed() != 1 {
		t.Fatalf("not packed: %d", c.Packed())
	}
	c.Flush()
	if len(recs) != 1 || recs[0].Role != RoleClient || !recs[0].RoleInferred {
		t.Errorf("after packing: %+v", recs)
	}
}
