package tracer

import (
	"bytes"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The kernel queues each socket's events in the socket's storage and sends
// them as one record when it closes (decode.go reads them). Two things must
// not wait for that: an alert on a connection held in SYN_SENT, SYN_RECV,
// CLOSE_WAIT or FIN_WAIT2 (flushStuck sends those queues in time), and the
// connections still open when tracing stops (drain sends every queue).

// StallHandler, when a Handler implements it, receives the flush scans'
// notices of connections held by a full receive window (not kernel events:
// observations of a scan), and the end of each scan that looked.
type StallHandler interface {
	Stalled(e *timeline.Event)
	StallScanEnded(now int64)
}

// attachFlush prepares the flush scan (an iter/tcp program). Without it
// the kernel side was loaded with queueing off (see load).
func (t *Tracer) attachFlush() error {
	p := t.coll.Programs[tcptraceProgFlushQueues]
	if p == nil {
		return nil
	}
	var err error
	if t.flushIter, err = attachIter(p); err != nil {
		return fmt.Errorf("preparing the queue flush scan (iter/tcp, Linux >= 5.9): %w", err)
	}
	t.flushEvery = flushPeriod(t.cfg.StuckAfter)
	return nil
}

// Queueing reports whether the kernel queues events per socket.
func (t *Tracer) Queueing() bool {
	var on uint32
	if v := t.coll.Variables["queue_events"]; v != nil {
		_ = v.Get(&on)
	}
	return on != 0 && t.flushIter != nil
}

// flushStuck sends, every flushPeriod, the queues of the sockets that
// hold a watched state since before StuckAfter less a margin, so that
// their alert is raised when it is due, as if every event had come at once.
// A scan walks every traced socket: it runs no more often than 50 times
// its cost, like the socket scans.
func (t *Tracer) flushStuck(h Handler) {
	if t.flushIter == nil || t.cfg.StuckAfter <= 0 || time.Since(t.lastFlush) < t.flushEvery {
		return
	}
	start := time.Now()
	// A queue whose oldest entry is older than this is sent: its socket
	// entered its state no earlier, so its alert is due no sooner than
	// margin from now, and the next flush comes within flushEvery.
	margin := 2*t.flushEvery + t.cfg.PollInterval
	before := monotonicNow() - int64(t.cfg.StuckAfter-margin)
	var ev timeline.Event
	// A failed scan leaves the queues for the next one (or the socket's
	// close, or the scan at exit): alerts may come late, nothing is lost.
	_ = t.flushQueues(h, &ev, false, before)
	t.lastFlush = time.Now()
	t.flushEvery = max(flushPeriod(t.cfg.StuckAfter), 50*time.Since(start))
}

// flushPeriod: a flush scan walks every socket of every namespace, so it
// runs no more often than a quarter of StuckAfter (the queues it sends are
// older than half of it), and at least every second.
func flushPeriod(stuckAfter time.Duration) time.Duration {
	return max(time.Second, stuckAfter/4)
}

// flushQueues runs the flush scan: every queue with all, else those of
// sockets in a watched state whose oldest entry is older than before
// (CLOCK_MONOTONIC ns). The records go to h in the order the scan finds
// them; each is one socket's, in order.
func (t *Tracer) flushQueues(h Handler, ev *timeline.Event, all bool, before int64) error {
	if t.flushIter == nil {
		return nil
	}
	allFlag := uint32(0)
	if all {
		allFlag = 1
	}
	if err := t.coll.Variables["flush_all"].Set(allFlag); err != nil {
		return fmt.Errorf("setting flush_all: %w", err)
	}
	if err := t.coll.Variables["flush_before_ns"].Set(uint64(max(before, 0))); err != nil {
		return fmt.Errorf("setting flush_before_ns: %w", err)
	}
	// Connections held by a full window for most of StuckAfter are told
	// (the alert is due at StuckAfter, the next scan may come later).
	stall := t.decoder.stallAfterJiffies(t.cfg.StuckAfter / 2)
	if all {
		stall = 0
	}
	if v := t.coll.Variables["stall_after_jiffies"]; v != nil {
		if err := v.Set(stall); err != nil {
			return fmt.Errorf("setting stall_after_jiffies: %w", err)
		}
	}
	// A scan that meets no full socket leaves scan_jiffies as it finds
	// it: zero, so that no stale value is taken for now's.
	jiffiesVar := t.coll.Variables["scan_jiffies"]
	if jiffiesVar != nil {
		if err := jiffiesVar.Set(uint64(0)); err != nil {
			return fmt.Errorf("setting scan_jiffies: %w", err)
		}
	}
	// iter/tcp walks the namespace of the thread that opens it; the
	// records are handed on here, not on that thread.
	var records [][]byte
	flushHere := func() error {
		return iterate(t.flushIter, RecordSize, func(b []byte) { records = append(records, bytes.Clone(b)) })
	}
	var err error
	if t.nets == nil {
		t.ns.do(func() { err = flushHere() })
	} else {
		t.nets.scan.Lock()
		if all {
			// Namespaces made since the last discovery hold queues too.
			t.nets.refresh(time.Now())
		}
		err = t.nets.each(nil, func(uint32) error { return flushHere() })
		t.nets.scan.Unlock()
	}
	t.records += uint64(len(records))
	now := time.Now().UnixNano()
	// The jiffies of the scan's last socket, read near the scan's end.
	var jiffies uint64
	if jiffiesVar != nil && jiffiesVar.Get(&jiffies) == nil {
		t.decoder.clock.sample(now, jiffies)
	}
	for _, b := range records {
		if r := (*rawRecord)(unsafe.Pointer(&b[0])); r.Kind == kindStall {
			if sh, ok := h.(StallHandler); ok && t.decoder.decodeStall(r, ev, now) {
				sh.Stalled(ev)
			}
			continue
		}
		if t.decoder.Decode(b, ev, h.Event) != nil {
			t.decodeErr++
		}
	}
	if sh, ok := h.(StallHandler); ok && stall != 0 && err == nil {
		sh.StallScanEnded(now)
	}
	if err != nil {
		return fmt.Errorf("sending the queued events of open sockets: %w", err)
	}
	return nil
}

// queueNetNS is the namespace whose sockets queue their events (0: all):
// those the flush scans can enter.
func (t *Tracer) queueNetNS() uint32 {
	switch {
	case t.nets == nil:
		return t.ns.inode
	case canEnterNetNS():
		return 0
	}
	return t.nets.home
}

// canEnterNetNS: setns() into a network namespace needs CAP_SYS_ADMIN.
func canEnterNetNS() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0
}

func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
