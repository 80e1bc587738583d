// Eviction: room made in a full table, a connection at rest first.

package timeline

// evictOldest makes room: a connection at rest if there is one (packed
// connections are the idle ones), else the least recently active.
func (c *Correlator) evictOldest() {
	var conn *Connection
	if slot := c.packed.any(); slot >= 0 {
		conn = c.unpackSlot(slot)
	} else {
		conn = c.open.head
	}
	if conn == nil {
		conn = c.closing.head
	}
	if conn == nil {
		return
	}
	conn.Evicted = true
	c.stats.Evicted++
	c.finish(conn)
}
