package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Every network namespace. iter/tcp walks the TCP tables of the namespace
// current when the iterator is opened, and /proc/sys/net shows the sysctls
// of the reader's namespace: to see the sockets of every pod of a node, the
// scans enter each namespace in turn.
//
// One worker thread hops from namespace to namespace and back home after
// each, rather than one thread parked in each namespace: it is bounded (one
// thread, however many pods), and it pins nothing (a thread parked in a
// namespace keeps it alive after its last process is gone). The cost is two
// setns() per namespace and scan, a few microseconds each.

// maxNetNS bounds the namespaces scanned; more are counted, not scanned.
const maxNetNS = 4096

// minDiscoverEvery is the shortest time between two discoveries; they are
// spaced further, 50 times their cost, on hosts with many processes.
const minDiscoverEvery = time.Second

// nsWorker is an OS thread that enters namespaces on request. Locked and
// never unlocked: a thread that has been in another namespace must not go
// back to the runtime's pool. If it can't return home it ends, and with it
// the thread.
type nsWorker struct {
	work chan func()
	home int // fd of tcptrace's own namespace, to return to
	// broken: it could not get back home; the thread is gone.
	broken bool
}

func newNSWorker() (*nsWorker, uint32, error) {
	w := &nsWorker{work: make(chan func())}
	type started struct {
		inode uint32
		err   error
	}
	ready := make(chan started)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ready <- started{err: fmt.Errorf("opening tcptrace's own network namespace: %w", err)}
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			ready <- started{err: fmt.Errorf("opening tcptrace's own network namespace: %w", err)}
			return
		}
		w.home = fd
		ready <- started{inode: uint32(st.Ino)}
		for f := range w.work {
			f()
			if w.broken {
				return // the thread ends with this locked goroutine
			}
		}
		unix.Close(w.home)
	}()
	s := <-ready
	if s.err != nil {
		return nil, 0, s.err
	}
	return w, s.inode, nil
}

// in runs f inside the namespace that path names, if it still is the one
// with this inode (a /proc/PID path may have been reused), and returns
// home. f runs at home when inode is home's.
func (w *nsWorker) in(path string, inode, home uint32, f func()) error {
	done := make(chan error)
	w.work <- func() {
		if inode == home {
			f()
			done <- nil
			return
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			done <- err
			return
		}
		if uint32(st.Ino) != inode {
			done <- errNetNSMoved
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		f()
		if err := unix.Setns(w.home, unix.CLONE_NEWNET); err != nil {
			w.broken = true
			done <- fmt.Errorf("returning from network namespace %s: %w", path, err)
			return
		}
		done <- nil
	}
	return <-done
}

func (w *nsWorker) close() { close(w.work) }

// errNetNSMoved: the path names another namespace now (its process ended
// and the PID was reused).
var errNetNSMoved = errors.New("the path names another namespace now")

// netNS is one namespace the scans walk.
type netNS struct {
	path    string // a file naming it: /run/netns/NAME or /proc/PID/ns/net
	sysctls timeline.Sysctls
}

// netNSSet is the namespaces the scans walk when no --netns path is given:
// every namespace of the host (only the one of that inode with --netns
// INODE), found through /run/netns and each process's /proc/PID/ns/net.
type netNSSet struct {
	filter uint32 // Config.NetNS: only this namespace; 0: all
	home   uint32 // tcptrace's own

	scan   sync.Mutex // one scan at a time: the worker and the fields below
	worker *nsWorker
	known  map[uint32]*netNS
	// newSysctls are those of namespaces found since the correlator last
	// heard; gone, the namespaces that went.
	newSysctls []timeline.Sysctls
	gone       []uint32
	lastFound  time.Time
	findEvery  time.Duration
	denied     error // first refusal to enter a namespace
	deniedN    int
	overflow   int // namespaces left out by maxNetNS at the last discovery

	// mu guards what ScansNetNS reads: it is called from the correlator,
	// during or between scans.
	mu      sync.Mutex
	scanned map[uint32]bool
	// asked: namespaces of connections that scans don't know yet, to look
	// for at the next scan; notFound: those a discovery looked for in vain,
	// not worth another until the next regular one. Both bounded.
	asked    map[uint32]bool
	notFound map[uint32]bool
}

func newNetNSSet(filter uint32) (*netNSSet, error) {
	w, home, err := newNSWorker()
	if err != nil {
		return nil, err
	}
	return &netNSSet{filter: filter, home: home, worker: w, known: make(map[uint32]*netNS),
		scanned: make(map[uint32]bool), asked: make(map[uint32]bool), notFound: make(map[uint32]bool)}, nil
}

// scans reports whether the scans walk (or will, from the next scan on)
// namespace ino. One they don't know yet makes the next scan look for it,
// once: orphans of a namespace made since the last discovery are followed.
func (s *netNSSet) scans(ino uint32) bool {
	if s.filter != 0 && ino != s.filter {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scanned[ino] {
		return true
	}
	if s.notFound[ino] || len(s.scanned) >= maxNetNS || len(s.asked) >= maxNetNS || len(s.notFound) >= maxNetNS {
		return false
	}
	s.asked[ino] = true
	return true
}

// discover lists the namespaces: tcptrace's own, those named under
// /run/netns, and those of every process. Deduplicated by inode; a name
// under /run/netns is preferred, it outlives processes.
func discoverNetNS(home, filter uint32) (found map[uint32]string, overflow int) {
	found = make(map[uint32]string)
	add := func(path string) {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return // gone, or another user's process without CAP_SYS_PTRACE
		}
		ino := uint32(st.Ino)
		if filter != 0 && ino != filter {
			return
		}
		if _, ok := found[ino]; ok {
			return
		}
		if len(found) >= maxNetNS {
			overflow++
			return
		}
		found[ino] = path
	}
	if filter == 0 || filter == home {
		found[home] = ""
	}
	if names, err := filepath.Glob("/run/netns/*"); err == nil {
		for _, n := range names {
			add(n)
		}
	}
	if d, err := os.Open("/proc"); err == nil {
		for {
			names, err := d.Readdirnames(1024)
			for _, n := range names {
				if n[0] >= '0' && n[0] <= '9' {
					add("/proc/" + n + "/ns/net")
				}
			}
			if err != nil {
				break
			}
		}
		d.Close()
	}
	return found, overflow
}

// refresh discovers the namespaces if due (or asked for), reading the
// sysctls of new ones. Called with s.scan held.
func (s *netNSSet) refresh(now time.Time) {
	s.mu.Lock()
	asked := len(s.asked) > 0
	s.mu.Unlock()
	regular := s.lastFound.IsZero() || now.Sub(s.lastFound) >= s.findEvery
	if !asked && !regular {
		return
	}
	start := time.Now()
	found, overflow := discoverNetNS(s.home, s.filter)
	s.overflow, s.deniedN = overflow, 0
	for ino := range s.known {
		if _, ok := found[ino]; !ok {
			delete(s.known, ino)
			s.gone = append(s.gone, ino)
		}
	}
	for ino, path := range found {
		if ns := s.known[ino]; ns != nil {
			ns.path = path // the process it was found through may be gone
			continue
		}
		ns := &netNS{path: path}
		var read bool
		if err := s.enter(ino, ns, func() { ns.sysctls, read = readSysctls(ino), true }); err != nil || !read {
			continue // gone already, or not ours to enter: found again next time
		}
		s.known[ino] = ns
		s.newSysctls = append(s.newSysctls, ns.sysctls)
	}
	s.mu.Lock()
	clear(s.scanned)
	for ino := range s.known {
		s.scanned[ino] = true
	}
	if regular {
		clear(s.notFound)
	}
	for ino := range s.asked {
		if !s.scanned[ino] {
			s.notFound[ino] = true
		}
	}
	clear(s.asked)
	s.mu.Unlock()
	if regular {
		s.lastFound = time.Now()
		s.findEvery = max(minDiscoverEvery, 50*s.lastFound.Sub(start))
	}
}

// enter runs f in namespace ino, noting a refusal (setns needs
// CAP_SYS_ADMIN). A namespace that moved or went is not an error.
func (s *netNSSet) enter(ino uint32, ns *netNS, f func()) error {
	if s.worker == nil || s.worker.broken {
		w, _, err := newNSWorker()
		if err != nil {
			return err
		}
		s.worker = w
	}
	err := s.worker.in(ns.path, ino, s.home, f)
	if errors.Is(err, unix.EPERM) {
		s.deniedN++
		if s.denied == nil {
			s.denied = fmt.Errorf("entering network namespace %d (%s): %w", ino, ns.path, err)
		}
	}
	return err
}

// each runs f in every known namespace (those of only, if not nil), in
// inode order. A namespace that went since its discovery is skipped (and
// dropped at the next one).
func (s *netNSSet) each(only map[uint32]bool, f func(ino uint32) error) error {
	inos := make([]uint32, 0, len(s.known))
	for ino := range s.known {
		if only == nil || only[ino] {
			inos = append(inos, ino)
		}
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	var errs []error
	for _, ino := range inos {
		var ferr error
		if err := s.enter(ino, s.known[ino], func() { ferr = f(ino) }); err != nil {
			if s.worker.broken {
				return err
			}
			continue
		}
		if ferr != nil {
			errs = append(errs, ferr)
		}
	}
	return errors.Join(errs...)
}

// tell hands the correlator the sysctls of the namespaces found since it
// last heard, and the namespaces that went.
func (s *netNSSet) tell(c *timeline.Correlator) {
	for _, sys := range s.newSysctls {
		c.SetSysctls(sys)
	}
	for _, ino := range s.gone {
		c.ForgetSysctls(ino)
	}
	s.newSysctls, s.gone = s.newSysctls[:0], s.gone[:0]
}

// warning says which namespaces the scans leave out, if any.
func (s *netNSSet) warning() error {
	var errs []error
	if s.denied != nil {
		errs = append(errs, fmt.Errorf("socket scans skip %d network namespace(s): entering one (setns) needs CAP_SYS_ADMIN (%v); "+
			"their connections older than tcptrace and their orphaned FIN_WAIT2 sockets are not seen", s.deniedN, s.denied))
	}
	if s.overflow > 0 {
		errs = append(errs, fmt.Errorf("socket scans skip %d network namespace(s) beyond the first %d: "+
			"give --netns to watch one of them", s.overflow, maxNetNS))
	}
	return errors.Join(errs...)
}

func (s *netNSSet) close() {
	if s.worker != nil && !s.worker.broken {
		s.worker.close()
	}
}

// readSysctls reads the TCP sysctls that shape timeouts in the namespace
// of the calling thread.
// readInt reads a number from a /proc file, -1 when it can't.
func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

func readSysctls(ino uint32) timeline.Sysctls {
	read := func(name string) int { return readInt("/proc/sys/net/ipv4/" + name) }
	s := timeline.Sysctls{NetNS: ino,
		SynRetries:        read("tcp_syn_retries"),
		SynAckRetries:     read("tcp_synack_retries"),
		SynLinearTimeouts: read("tcp_syn_linear_timeouts"),
		FinTimeout:        read("tcp_fin_timeout"),
		MaxOrphans:        read("tcp_max_orphans"),
	}
	s.Somaxconn = readInt("/proc/sys/net/core/somaxconn")
	// The ports connect() picks from: a connection older than tcptrace
	// whose local port is one of them, with no listener on it, is a client.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, err1 := strconv.ParseUint(f[0], 10, 16)
			hi, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 == nil && err2 == nil {
				s.LocalPorts = [2]uint16{uint16(lo), uint16(hi)}
			}
		}
	}
	return s
}
