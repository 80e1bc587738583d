// Roles of connections older than tracing: their handshake was not seen,
// so the role is worked out from the listeners and the ports.

package timeline

import "net/netip"

// defaultLocalPorts is the kernel's ip_local_port_range, which each new
// network namespace starts with.
var defaultLocalPorts = [2]uint16{32768, 60999}

// guessRole gives a connection first seen in state first its role: some
// states belong to one side only; otherwise it is inferred from what is
// known now (RoleInferred), or unknown.
func (c *Correlator) guessRole(conn *Connection, first State) Role {
	switch first {
	case StateListen:
		return RoleListener
	case StateSynSent:
		return RoleClient
	case StateSynRecv:
		return RoleServer
	}
	role := c.inferRole(conn, nil)
	conn.RoleInferred = role != RoleUnknown
	return role
}

// InferRoles works out the roles of the connections the start-up scan
// found (Seed), once every socket is in: a scan may list a listener after
// the connections accepted from it. Call it after the last Seed.
func (c *Correlator) InferRoles() {
	idx := scanIndex{bound: make(map[boundKey]bool), seeds: make(map[tupleKey][]*Connection)}
	for _, conn := range c.live {
		switch {
		case conn.Role == RoleListener:
			a := conn.LAddr.Unmap()
			idx.bound[boundKey{conn.NetNS, netip.AddrPortFrom(a, conn.LPort)}] = true
			if !a.IsUnspecified() && !a.IsLoopback() {
				idx.bound[boundKey{0, netip.AddrPortFrom(a, conn.LPort)}] = true
			}
		case conn.seeded:
			k := tupleOf(conn)
			idx.seeds[k] = append(idx.seeds[k], conn)
		}
	}
	for _, conn := range c.live {
		if !conn.seeded || conn.Role != RoleUnknown && !conn.RoleInferred {
			continue
		}
		conn.Role = c.inferRole(conn, &idx)
		conn.RoleInferred = conn.Role != RoleUnknown
	}
}

// scanIndex is what the whole start-up scan tells about listeners and
// connections.
type scanIndex struct {
	// bound: listeners by namespace and address:port, and (namespace 0)
	// by address alone for addresses that are neither loopback nor
	// wildcard, which name one host whatever the namespace.
	bound map[boundKey]bool
	seeds map[tupleKey][]*Connection
}

type boundKey struct {
	netns uint32
	ep    netip.AddrPort
}

type tupleKey struct{ local, remote netip.AddrPort }

func tupleOf(conn *Connection) tupleKey {
	return tupleKey{netip.AddrPortFrom(conn.LAddr.Unmap(), conn.LPort), netip.AddrPortFrom(conn.RAddr.Unmap(), conn.RPort)}
}

// inferRole: the local port is held by a listener of the same namespace:
// server. The remote endpoint is a listener on this host, or the local
// port was picked from ip_local_port_range (and no listener holds it):
// client. idx is nil while the scan is not complete.
func (c *Correlator) inferRole(conn *Connection, idx *scanIndex) Role {
	if conn.LPort == 0 {
		return RoleUnknown
	}
	if c.listening[portKey{conn.NetNS, conn.LPort}] > 0 {
		return RoleServer
	}
	raddr := conn.RAddr.Unmap()
	remote := netip.AddrPortFrom(raddr, conn.RPort)
	// Within the namespace: a listener on the remote port, and the remote
	// address is this namespace's own.
	if c.listening[portKey{conn.NetNS, conn.RPort}] > 0 && (raddr.IsLoopback() || raddr == conn.LAddr.Unmap()) {
		return RoleClient
	}
	if idx != nil {
		if idx.bound[boundKey{conn.NetNS, remote}] ||
			!raddr.IsLoopback() && idx.bound[boundKey{0, remote}] {
			return RoleClient
		}
		// The other end was found by the scan too (another namespace, a
		// veth away), and a listener there holds its port.
		t := tupleOf(conn)
		for _, peer := range idx.seeds[tupleKey{t.remote, t.local}] {
			if (peer.NetNS == conn.NetNS || !raddr.IsLoopback()) && c.listening[portKey{peer.NetNS, peer.LPort}] > 0 {
				return RoleClient
			}
		}
	}
	ports := defaultLocalPorts
	if sys := c.sys[conn.NetNS]; sys != nil && sys.LocalPorts[0] > 0 && sys.LocalPorts[1] >= sys.LocalPorts[0] {
		ports = sys.LocalPorts
	}
	if conn.LPort >= ports[0] && conn.LPort <= ports[1] {
		return RoleClient
	}
	return RoleUnknown
}
