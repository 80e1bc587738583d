package tracer

import (
	"time"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// DiscoverNetNS looks for namespaces now, whenever the last discovery was,
// and returns how many the scans walk. With fresh, it forgets those it
// knew first: each is new again, entered to read its sysctls.
func (t *Tracer) DiscoverNetNS(fresh bool) int {
	t.nets.scan.Lock()
	defer t.nets.scan.Unlock()
	if fresh {
		clear(t.nets.known)
	}
	t.nets.lastFound = time.Time{}
	t.nets.refresh(time.Now())
	t.nets.newSysctls, t.nets.gone = t.nets.newSysctls[:0], t.nets.gone[:0]
	// No regular discovery during a benchmark's scans.
	t.nets.findEvery = time.Hour
	return len(t.nets.known)
}

// FollowIn is Follow as if the correlator followed sockets in the
// namespaces inos, for a benchmark without orphans to make.
func (t *Tracer) FollowIn(c *timeline.Correlator, now int64, inos ...uint32) error {
	t.nets.scan.Lock()
	defer t.nets.scan.Unlock()
	only := make(map[uint32]bool)
	for _, ino := range inos {
		only[ino] = true
	}
	c.BeginFollowScan()
	if err := t.nets.each(only, func(uint32) error { return t.scanHere(c.ScanSocket) }); err != nil {
		return err
	}
	c.EndScan(now)
	return nil
}
