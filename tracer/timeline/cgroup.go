package timeline

// Cgroup returns the cgroup v2 id of the connection with this cookie, 0 if
// it is not tracked or its cgroup is unknown. Events of timewait sockets
// carry none (they are only a sock_common): this names them (--events). A
// connection at rest stays packed.
func (c *Correlator) Cgroup(cookie uint64) uint64 {
	if conn := c.live[cookie]; conn != nil {
		return conn.Cgroup
	}
	if slot, ok := c.packed.find(cookie); ok {
		return c.packed.ctxs[c.packed.at(c.packed.index[slot]-1).ctx].cgroup
	}
	return 0
}
