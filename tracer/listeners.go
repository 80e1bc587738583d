package tracer

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Listeners' accept queues are read in socket scans, which walk the whole
// host's TCP tables: too dear to run every second on a busy host. What
// triggers one is cheap: each namespace's ListenDrops counter (the
// kernel's LINUX_MIB_LISTENDROPS, /proc/net/netstat), read once a second,
// or a client of a local listener retrying its SYN. The cost of the scans
// then scales with drops, not with sockets or traffic.

// ListenWatch keeps the namespaces' ListenDrops counts between looks.
type ListenWatch struct {
	last      map[uint32]uint64
	want      bool // the correlator asked for a look
	lastPoll  time.Time
	lastLook  time.Time
	lookEvery time.Duration
	lastSys   time.Time
}

// NewListenWatch returns a watch that looks at most every 100 ms.
func NewListenWatch() *ListenWatch {
	return &ListenWatch{last: make(map[uint32]uint64), lookEvery: 100 * time.Millisecond}
}

// PollListeners reads every traced namespace's ListenDrops (and, every 10 s, its
// sysctls, which change while tcptrace runs) and, when one grew or the
// correlator asks, scans the listeners so the correlator sees their
// queues. Returns the scan's error, if one ran and failed.
func (t *Tracer) PollListeners(w *ListenWatch, c *timeline.Correlator, now time.Time) error {
	if t.scanErr != nil || w == nil {
		return nil
	}
	w.want = w.want || c.WantsListenerLook()
	if !w.want && now.Sub(w.lastPoll) < time.Second {
		return nil
	}
	w.lastPoll, w.want = now, false
	// A client's SYN retry only hastens the poll: the tables are walked
	// only when a namespace's listeners did drop.
	grew := false
	sysctls := now.Sub(w.lastSys) >= 10*time.Second
	if sysctls {
		w.lastSys = now
	}
	visit := func(ino uint32) error {
		if n, ok := listenDrops(); ok {
			if prev, seen := w.last[ino]; seen && n > prev {
				grew = true
			}
			if len(w.last) < maxNetNS {
				w.last[ino] = n
			}
		}
		if sysctls {
			c.SetSysctls(readSysctls(ino))
		}
		return nil
	}
	if t.nets != nil {
		t.nets.scan.Lock()
		_ = t.nets.each(nil, visit)
		t.nets.scan.Unlock()
	} else {
		t.ns.do(func() { _ = visit(t.ns.inode) })
	}
	if !grew || now.Sub(w.lastLook) < w.lookEvery {
		return nil
	}
	start := time.Now()
	w.lastLook = now
	err := t.ScanSockets(func(s *timeline.Socket) {
		if s.State == timeline.StateListen {
			c.ObserveListener(s, now.UnixNano())
		}
	})
	// A look costs the whole host's tables: 50 times its cost between two,
	// as the other socket scans, so at most 2% of a CPU however many drop.
	w.lookEvery = max(100*time.Millisecond, 50*time.Since(start))
	return err
}

// listenDrops reads ListenDrops from the calling thread's namespace.
func listenDrops() (uint64, bool) {
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var names []string
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "TcpExt:" {
			continue
		}
		if names == nil {
			for _, n := range f[1:] {
				names = append(names, string(n))
			}
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) && names[i] == "ListenDrops" {
				n, err := strconv.ParseUint(string(v), 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

var errNotScanned = errors.New("that network namespace is not scanned")

// ScanNetNS walks the TCP sockets of one traced namespace.
func (t *Tracer) ScanNetNS(netns uint32, fn func(*timeline.Socket)) error {
	if t.scanErr != nil {
		return t.scanErr
	}
	if t.nets == nil {
		if netns != t.ns.inode {
			return errNotScanned
		}
		var err error
		t.ns.do(func() { err = t.scanHere(fn) })
		return err
	}
	t.nets.scan.Lock()
	defer t.nets.scan.Unlock()
	if !t.nets.scans(netns) {
		return errNotScanned
	}
	return t.nets.each(map[uint32]bool{netns: true}, func(uint32) error { return t.scanHere(fn) })
}
