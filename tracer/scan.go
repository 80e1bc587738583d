package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// nsThread is an OS thread that lives in the traced network namespace.
// iter/tcp walks the tables of the namespace current when the iterator is
// opened, and /proc/sys/net shows the sysctls of the reader's namespace, so
// both are read from here.
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
			return fmt.Errorf("preparing the TCP socket iterator (iter/tcp, Linux >= 5.9): %w", err)
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

// ScanSockets walks every TCP socket of the traced namespace (listeners,
// connections, request and timewait sockets), within the kernel filters.
func (t *Tracer) ScanSockets(fn func(*timeline.Socket)) error {
	if t.scanErr != nil {
		return t.scanErr
	}
	var raw tcptraceSockInfo
	size := int(unsafe.Sizeof(raw))
	var s timeline.Socket
	var err error
	t.ns.do(func() {
		err = iterate(t.tcpIter, size, func(b []byte) {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&raw)), size), b)
			if decodeSocket(&raw, &s) {
				fn(&s)
			}
		})
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
	s.BytesAcked, s.BytesReceived = r.BytesAcked, r.BytesReceived
	s.SRTT = r.SrttUs >> 3
	s.TotalRetrans = r.TotalRetrans
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

// Sysctls reads the TCP sysctls that shape timeouts in the traced
// namespace. The namespace inode tells which connections they apply to.
func (t *Tracer) Sysctls() timeline.Sysctls {
	s := timeline.Sysctls{NetNS: t.ns.inode, SynRetries: -1, SynAckRetries: -1, SynLinearTimeouts: -1, FinTimeout: -1}
	t.ns.do(func() {
		read := func(name string) int {
			b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
			if err != nil {
				return -1
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return -1
			}
			return n
		}
		s.SynRetries = read("tcp_syn_retries")
		s.SynAckRetries = read("tcp_synack_retries")
		s.SynLinearTimeouts = read("tcp_syn_linear_timeouts")
		s.FinTimeout = read("tcp_fin_timeout")
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 {
				lo, err1 := strconv.ParseUint(f[0], 10, 16)
				hi, err2 := strconv.ParseUint(f[1], 10, 16)
				if err1 == nil && err2 == nil {
					s.LocalPorts = [2]uint16{uint16(lo), uint16(hi)}
				}
			}
		}
	})
	return s
}

// Seed gives the correlator records for the TCP connections that exist
// already, with their owners, so that they are reported and watched like
// the others (partial: their start was not seen).
func (t *Tracer) Seed(c *timeline.Correlator, now int64) error {
	var sockets []timeline.Socket
	// Sockets first: this scan also creates the cookies of MPTCP subflows,
	// which the owner scan reads.
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
	return nil
}

// Scan feeds the correlator a scan of the traced namespace's TCP sockets:
// it follows orphaned FIN_WAIT2 sockets and counts TIME_WAIT ones.
func (t *Tracer) Scan(c *timeline.Correlator, now int64) error {
	c.BeginScan()
	if err := t.ScanSockets(c.ScanSocket); err != nil {
		return err // no EndScan: it would take every followed orphan for dropped
	}
	c.EndScan(now)
	return nil
}
