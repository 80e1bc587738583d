package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"runtime"

	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// nsThread is an OS thread that lives in the namespace --netns PATH names.
// iter/tcp walks the tables of the namespace current when the iterator is
// opened, and /proc/sys/net shows the sysctls of the reader's namespace, so
// both are read from here. Without --netns PATH the scans walk every
// namespace instead (netns.go).
type nsThread struct {
	work  chan func()
	inode uint32
}

func newNSThread(path string) (*nsThread, error) {
	t := &nsThread{work: make(chan func())}
	errc := make(chan error)
	go func() {
		// Never unlocked: a thread moved to another namespace must not go
		// back to the runtime's pool; it ends with this goroutine.
		runtime.LockOSThread()
		if path != "" {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("opening network namespace %s: %w", path, err)
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
			if err != nil {
				errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
				return
			}
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err == nil {
			t.inode = uint32(st.Ino)
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

func (t *nsThread) do(f func()) {
	done := make(chan struct{})
	t.work <- func() {
		defer close(done)
		f()
	}
	<-done
}

func (t *nsThread) close() { close(t.work) }

// openNetNS prepares the scans' way into the namespaces they walk: the one
// --netns PATH names, held by a thread of its own, or else every namespace.
func (t *Tracer) openNetNS() error {
	var err error
	if t.cfg.NetNSPath == "" {
		t.nets, err = newNetNSSet(t.cfg.NetNS)
		return err
	}
	if t.ns, err = newNSThread(t.cfg.NetNSPath); err != nil {
		if !errors.Is(err, unix.EPERM) {
			return err
		}
		// setns() into another namespace needs CAP_SYS_ADMIN. Tracing does
		// not: go on without the socket scans, and say so when asked.
		t.scanErr = fmt.Errorf("socket scans need CAP_SYS_ADMIN to enter network namespace %s (%v): "+
			"connections older than tcptrace and orphaned FIN_WAIT2 sockets are not seen", t.cfg.NetNSPath, err)
		if t.ns, err = newNSThread(""); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tracer) closeNetNS() {
	if t.ns != nil {
		t.ns.close()
	}
	if t.nets != nil {
		t.nets.close()
	}
}

// ScansNetNS reports whether the socket scans see namespace ino: the
// correlator follows the orphans of those only (timeline.Config.ScansNetNS).
func (t *Tracer) ScansNetNS(ino uint32) bool {
	switch {
	case t.scanErr != nil:
		return false
	case t.nets != nil:
		return t.nets.scans(ino)
	}
	return ino == t.ns.inode
}

// iterate opens an iterator link and hands each fixed-size record to fn.
func iterate(l *link.Iter, size int, fn func([]byte)) error {
	rd, err := l.Open()
	if err != nil {
		return err
	}
	defer rd.Close()
	br := bufio.NewReaderSize(rd, 64<<10)
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		fn(buf)
	}
}

// attachIters prepares the iterator links; they run only when opened. An
// iterator the kernel refused to load is left out: without iter/tcp there
// are no scans, without iter/task_file no owners for older sockets.
func (t *Tracer) attachIters() error {
	var err error
	if p := t.coll.Programs[tcptraceProgDumpTcp]; p != nil {
		if t.tcpIter, err = attachIter(p); err != nil {
			return fmt.Errorf("preparing the TCP socket iterator (iter/tcp, Linux >= %s): %w", KernelIterTCP, err)
		}
	} else {
		t.scanErr = errors.New("socket scans are off: this kernel refused the iter/tcp program (see tcptrace check)")
	}
	if p := t.coll.Programs[tcptraceProgDumpOwners]; p != nil {
		if t.fileIter, err = attachIter(p); err != nil {
			return fmt.Errorf("preparing the task file iterator (iter/task_file): %w", err)
		}
	}
	return nil
}

func attachIter(p *ebpf.Program) (*link.Iter, error) {
	l, err := link.AttachIter(link.IterOptions{Program: p})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ScanSockets walks every TCP socket of the traced namespaces (listeners,
// connections, request and timewait sockets), within the kernel filters.
func (t *Tracer) ScanSockets(fn func(*timeline.Socket)) error {
	if t.scanErr != nil {
		return t.scanErr
	}
	if t.nets == nil {
		var err error
		t.ns.do(func() { err = t.scanHere(fn) })
		return err
	}
	t.nets.scan.Lock()
	defer t.nets.scan.Unlock()
	if t.nets.lastFound.IsZero() {
		t.nets.refresh(time.Now())
	}
	return t.nets.each(nil, func(uint32) error { return t.scanHere(fn) })
}

// scanHere walks the TCP sockets of the calling thread's namespace.
func (t *Tracer) scanHere(fn func(*timeline.Socket)) error {
	var raw tcptraceSockInfo
	size := int(unsafe.Sizeof(raw))
	var s timeline.Socket
	err := iterate(t.tcpIter, size, func(b []byte) {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&raw)), size), b)
		if decodeSocket(&raw, &s) {
			fn(&s)
		}
	})
	if err != nil {
		return fmt.Errorf("scanning TCP sockets: %w", err)
	}
	return nil
}

func decodeSocket(r *tcptraceSockInfo, s *timeline.Socket) bool {
	var ok bool
	if s.LAddr, s.RAddr, ok = addrs(r.Family, &r.Saddr, &r.Daddr); !ok {
		return false
	}
	s.Cookie = r.Cookie
	s.State = timeline.State(r.State)
	s.Substate = timeline.State(r.Substate)
	s.LPort, s.RPort = r.Sport, r.Dport
	s.NetNS = r.Netns
	s.UID = r.Uid
	s.Cgroup = r.Cgroup
	s.BytesAcked, s.BytesReceived = r.BytesAcked, r.BytesReceived
	s.SRTT = r.SrttUs >> 3
	s.TotalRetrans = r.TotalRetrans
	s.Queue = timeline.Queue{}
	if s.State == timeline.StateListen {
		s.Queue = timeline.Queue{Len: r.Qlen, Max: r.Qmax, Drops: r.Drops, Known: true}
	}
	return true
}

// ScanOwners walks every process's open TCP sockets, tells fn which
// process holds which socket, and seeds the kernel's owner maps with them so
// that the --pid and --comm filters also apply to sockets older than tcptrace.
func (t *Tracer) ScanOwners(fn func(cookie uint64, pid uint32, comm string)) error {
	if t.fileIter == nil {
		return nil // refused by this kernel: older sockets go without owners
	}
	var raw tcptraceOwnerInfo
	size := int(unsafe.Sizeof(raw))
	err := iterate(t.fileIter, size, func(b []byte) {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&raw)), size), b)
		fn(raw.Cookie, raw.Pid, t.decoder.comm(&raw.Comm))
	})
	if err != nil {
		return fmt.Errorf("scanning process files: %w", err)
	}
	return nil
}

// Sysctls reads the TCP sysctls that shape timeouts in the namespace
// --netns PATH names, or else tcptrace's own (Seed and Scan hand the
// correlator those of every namespace they walk). The namespace inode tells
// which connections they apply to.
func (t *Tracer) Sysctls() timeline.Sysctls {
	var s timeline.Sysctls
	if t.nets != nil {
		t.nets.scan.Lock()
		defer t.nets.scan.Unlock()
		home := t.nets.home
		t.nets.enter(home, &netNS{}, func() { s = readSysctls(home) })
		return s
	}
	t.ns.do(func() { s = readSysctls(t.ns.inode) })
	return s
}

// Seed gives the correlator records for the TCP connections that exist
// already, with their owners, so that they are reported and watched like
// the others (partial: their start was not seen). An error says what is
// missing; what could be seeded is.
func (t *Tracer) Seed(c *timeline.Correlator, now int64) error {
	var sockets []timeline.Socket
	// Sockets first, in every namespace: this scan creates the cookies
	// (bpf_get_socket_cookie) that the owner scan reads from the sockets,
	// 0 on one no program asked before; without a cookie a socket gets no
	// owner, in user space or in the kernel's owners map.
	var warning error
	if t.nets != nil {
		t.nets.scan.Lock()
		t.nets.refresh(time.Now())
		t.nets.tell(c)
		warning = t.nets.warning()
		t.nets.scan.Unlock()
	}
	if err := t.ScanSockets(func(s *timeline.Socket) { sockets = append(sockets, *s) }); err != nil {
		return err
	}
	type owner struct {
		pid  uint32
		comm string
	}
	owners := make(map[uint64]owner)
	if err := t.ScanOwners(func(cookie uint64, pid uint32, comm string) {
		if _, ok := owners[cookie]; !ok {
			owners[cookie] = owner{pid, comm}
		}
	}); err != nil {
		return err
	}
	for i := range sockets {
		o := owners[sockets[i].Cookie]
		c.Seed(now, &sockets[i], o.pid, o.comm)
	}
	// Listeners may come after their connections in a scan: roles are
	// worked out once every socket is in.
	c.InferRoles()
	return warning
}

// Scan feeds the correlator a scan of the traced namespaces' TCP sockets:
// it follows orphaned FIN_WAIT2 sockets and counts TIME_WAIT ones. Every
// so often it first looks for namespaces made or gone since the last time.
func (t *Tracer) Scan(c *timeline.Correlator, now int64) error {
	return t.scan(c, now, false)
}

// Follow is a Scan of only the namespaces where the correlator follows
// sockets, without TIME_WAIT counts. Each namespace's walk costs the whole
// host's TCP tables (iter/tcp skips the other namespaces' sockets one by
// one): with a hundred namespaces, a full scan costs a hundred times more
// than one that follows the orphans of one namespace.
func (t *Tracer) Follow(c *timeline.Correlator, now int64) error {
	return t.scan(c, now, true)
}

func (t *Tracer) scan(c *timeline.Correlator, now int64, follow bool) error {
	if t.scanErr != nil {
		return t.scanErr
	}
	begin := c.BeginScan
	if follow {
		begin = c.BeginFollowScan
	}
	// A full scan also counts the sockets by state (tcptrace_sockets); a
	// follow scan sees only some namespaces.
	counts := make(map[timeline.State]int)
	visit := c.ScanSocket
	if !follow {
		visit = counting(counts, c.ScanSocket)
	}
	var err error
	if t.nets == nil {
		begin()
		t.ns.do(func() { err = t.scanHere(visit) })
	} else {
		t.nets.scan.Lock()
		t.nets.refresh(time.Now())
		t.nets.tell(c)
		var only map[uint32]bool
		if follow {
			only = make(map[uint32]bool)
			c.FollowedNetNS(func(ns uint32) { only[ns] = true })
		}
		begin()
		err = t.nets.each(only, func(uint32) error { return t.scanHere(visit) })
		t.nets.scan.Unlock()
	}
	if err != nil {
		return err // no EndScan: it would take every followed orphan for dropped
	}
	c.EndScan(now)
	if !follow {
		t.scanStates.set(counts)
	}
	return nil
}
