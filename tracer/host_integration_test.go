package tracer_test

// Host-side causes on the real kernel, each in a namespace of its own: a
// full accept queue, accept() at the fd limit, no free local port, a port
// in use at bind(), a firewall rule on this host, drops on a live
// connection, data after close(). Each asserts the cause tcptrace names
// and the evidence the kernel gave for it.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// rawListen makes a listening socket on 127.0.0.1 with backlog, that the
// test never accept()s from.
func rawListen(t *testing.T, ns *netnstest.NS, backlog int) (int, uint16) {
	t.Helper()
	var fd int
	var err error
	ns.Do(func() {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return
		}
		err = unix.Listen(fd, backlog)
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port)
}

// rawConnect starts a non-blocking connect() to 127.0.0.1:port with
// TCP_SYNCNT=synRetries; the socket is closed at cleanup.
func rawConnect(t *testing.T, ns *netnstest.NS, port uint16, synRetries int) (int, error) {
	t.Helper()
	fd, err := connectNonblocking(ns, port, synRetries)
	if fd > 0 {
		t.Cleanup(func() { unix.Close(fd) })
	}
	if errors.Is(err, unix.EINPROGRESS) {
		err = nil
	}
	return fd, err
}

// connectNonblocking starts a non-blocking connect() from ns to
// 127.0.0.1:port (with TCP_SYNCNT=synRetries when above 0) and returns the
// socket, which the caller closes, and connect()'s own error: EINPROGRESS
// when the handshake is under way.
func connectNonblocking(ns *netnstest.NS, port uint16, synRetries int) (int, error) {
	var fd int
	var err error
	ns.Do(func() {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		if synRetries > 0 {
			if err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, synRetries); err != nil {
				return
			}
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)})
	})
	return fd, err
}

// waitConnected waits until a non-blocking connect() completed.
func waitConnected(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(fds, int(waitTimeout/time.Millisecond)); n != 1 || err != nil {
		t.Fatalf("connect did not complete: %v", err)
	}
	if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
		t.Fatalf("connect: %v", syscall.Errno(e))
	}
}

func TestAcceptQueueFull(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	lfd, port := rawListen(t, ns, 1)
	// Backlog 1 holds two connections: the queue is full past its limit.
	for range 2 {
		fd, err := rawConnect(t, ns, port, 1)
		if err != nil {
			t.Fatal(err)
		}
		waitConnected(t, fd)
	}
	c.sockets("two connections queued", func(ss []timeline.Socket) bool {
		for _, s := range ss {
			if s.State == timeline.StateListen && s.LPort == port {
				return s.Queue.Len == 2
			}
		}
		return false
	})
	for range 4 {
		if _, err := rawConnect(t, ns, port, 1); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("the accept queue of 127.0.0.1:%d on this host was full", port)
	for _, r := range c.records("clients timed out", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleClient && r.RPort == port && r.Outcome == timeline.OutcomeTimeout
	}, 4) {
		if r.Reason != timeline.ReasonSynTimeout || !strings.Contains(r.Explanation(), want) {
			t.Errorf("client %d: %s: %s; want it to say %q", r.LPort, r.Reason, r.Explanation(), want)
		}
		if strings.Contains(r.Explanation(), "firewall") {
			t.Errorf("client %d blamed on a firewall: %s", r.LPort, r.Explanation())
		}
	}
	a := c.alert("listen overflow", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertListenOverflow && a.LPort == port
	})
	if a.Queue.Max != 1 || a.Queue.Len != 2 || a.Dropped == 0 {
		t.Errorf("alert queue %+v dropped %d; want 2 waiting, limit 1, some dropped", a.Queue, a.Dropped)
	}
	if e := string(timeline.AppendAlertExplanation(nil, &a)); !strings.Contains(e, "2 waiting, limit 1: the listen() backlog") {
		t.Errorf("alert says %q", e)
	}
	// Closing the listener resets the two it held: nobody had them.
	unix.Close(lfd)
	for _, r := range c.records("never accepted", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleServer && r.LPort == port && r.Outcome != timeline.OutcomeOpen
	}, 2) {
		if r.Reason != timeline.ReasonNeverAccepted || r.PID != 0 || r.Outcome != timeline.OutcomeResetLocal {
			t.Errorf("queued connection: %s %s pid %d: %s", r.Outcome, r.Reason, r.PID, r.Explanation())
		}
	}
}

// peerFDLimited listens with backlog 64, prints its address, lowers its fd
// limit so that accept() soon fails with EMFILE, and accepts (keeping each
// socket) until stdin closes; it prints "emfile" at the first EMFILE.
func peerFDLimited() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return 1
	}
	if unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) != nil || unix.Listen(fd, 64) != nil {
		return 1
	}
	sa, _ := unix.Getsockname(fd)
	fmt.Printf("127.0.0.1:%d\n", sa.(*unix.SockaddrInet4).Port)
	// A few fds above those open now: two accepts, then EMFILE.
	lim := uint64(fd + 3)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		fmt.Println("error", err)
		return 1
	}
	said := false
	for i := 0; i < 200; i++ { // about 2 s of a server retrying
		_, _, err := unix.Accept(fd)
		if errors.Is(err, unix.EMFILE) {
			if !said {
				fmt.Println("emfile")
				said = true
			}
			time.Sleep(10 * time.Millisecond) // the server's own back-off, not a test's wait
		}
	}
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	return 0
}

func TestAcceptEMFILE(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	p := startPeer(t, ns, "tt-fdlimited", "fdlimited", "")
	addr := p.line(t)
	_, portStr, _ := strings.Cut(addr, ":")
	port64, _ := strconv.ParseUint(portStr, 10, 16)
	port := uint16(port64)
	// Clients the test closes itself (no cleanup closes them): their ends
	// must reach both tracers (queued and at once) before these are
	// compared, however slow the kernel.
	var clients []int
	for range 6 {
		fd, err := connectNonblocking(ns, port, 0)
		if !errors.Is(err, unix.EINPROGRESS) {
			t.Fatalf("connect: %v", err)
		}
		clients = append(clients, fd)
	}
	if l := p.line(t); l != "emfile" {
		t.Fatalf("peer said %q", l)
	}
	a := c.alert("accept EMFILE", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertSyscallError && a.Syscall == timeline.SyscallAccept && a.Errno == uint16(unix.EMFILE)
	})
	if a.LPort != port || a.Comm != "tt-fdlimited" {
		t.Errorf("alert on %d by %s[%d], want port %d by tt-fdlimited", a.LPort, a.Comm, a.PID, port)
	}
	if e := string(timeline.AppendAlertExplanation(nil, &a)); !strings.Contains(e, "accept() failed with EMFILE") ||
		!strings.Contains(e, "file descriptor limit") {
		t.Errorf("alert says %q", e)
	}
	if n := c.corr.Stats().SyscallErrors[timeline.SyscallErrno{Syscall: timeline.SyscallAccept, Errno: uint16(unix.EMFILE)}]; n == 0 {
		t.Errorf("no accept() EMFILE counted")
	}
	for _, fd := range clients {
		unix.Close(fd)
	}
	// The listener goes first: closing it resets what its full queue
	// holds, so that no client is left retrying a FIN that nothing
	// answers (a handshake the full queue never completed; seen under
	// QEMU: 5 of 6 client ends within 30 s when the listener stayed).
	p.stdin.Close()
	p.wait(t)
	c.records("the clients' ends", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleClient && r.RPort == port && r.Outcome != timeline.OutcomeOpen
	}, len(clients))
}

func TestNoFreeLocalPort(t *testing.T) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/ip_local_port_range", "40000 40001")
	// The default (2) lets connect() on loopback reuse a TIME_WAIT port
	// pair once its last timestamp is old enough: tcp_tw_reuse_delay
	// (1000 ms) where the kernel has it (6.13 on), else a later second on
	// the clock, so that a second boundary between the closes and the
	// dials was enough (6.1 under QEMU: the dial connected). With no
	// reuse, the ports stay held.
	ns.Sysctl(t, "net/ipv4/tcp_tw_reuse", "0")
	c := trace(t, ns, tracer.Config{})
	// A port outside the range: bind(0) would take one of the two.
	ln, port := listen(t, ns, "127.0.0.1:7070")
	defer ln.Close()
	// Two connections closed by the client first: their ports are held
	// in TIME_WAIT; the next connect() finds none free.
	for range 2 {
		conn := dial(t, ns, ln.Addr().String())
		srv := accept(t, ln)
		conn.Close()
		readEOF(t, srv)
		srv.Close()
	}
	var errs []error
	for range 2 {
		var err error
		ns.Do(func() { _, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second) })
		errs = append(errs, err)
	}
	for _, err := range errs {
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Fatalf("dial: %v, want EADDRNOTAVAIL", err)
		}
	}
	for _, r := range c.records("no local port", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleClient && r.RPort == port && r.Reason == timeline.ReasonNoLocalPort
	}, 2) {
		e := r.Explanation()
		if r.SyscallErrno != uint16(syscall.EADDRNOTAVAIL) || !strings.Contains(e, "ip_local_port_range has 2 ports") ||
			!strings.Contains(e, "2 in use towards 127.0.0.1:"+strconv.Itoa(int(port))+" (2 in TIME_WAIT)") {
			t.Errorf("record: errno %d: %s", r.SyscallErrno, e)
		}
	}
}

func TestPortInUse(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	bindPort := func() error {
		var err error
		ns.Do(func() {
			fd, e := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if e != nil {
				err = e
				return
			}
			defer unix.Close(fd)
			err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)})
		})
		return err
	}
	// A live listener holds it.
	if err := bindPort(); !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("bind: %v, want EADDRINUSE", err)
	}
	a := c.alert("port held by a listener", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertPortInUse && a.LPort == port && len(a.Holders.Listeners) > 0
	})
	if e := string(timeline.AppendAlertExplanation(nil, &a)); !strings.Contains(e, "bind() of 127.0.0.1:"+strconv.Itoa(int(port))+" failed with EADDRINUSE: a listener holds the port") {
		t.Errorf("alert says %q", e)
	}
	// The server closes first, so TIME_WAIT holds the port: a restart
	// without SO_REUSEADDR fails.
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	ln.Close()
	srv.Close()
	readEOF(t, cli)
	cli.Close()
	c.sockets("the server's TIME_WAIT", func(ss []timeline.Socket) bool {
		for _, s := range ss {
			if s.State == timeline.StateTimeWait && s.LPort == port {
				return true
			}
		}
		return false
	})
	if err := bindPort(); !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("bind after close: %v, want EADDRINUSE", err)
	}
	a = c.alert("port held by TIME_WAIT", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertPortInUse && a.LPort == port && a.Holders.TimeWait > 0
	})
	if e := string(timeline.AppendAlertExplanation(nil, &a)); !strings.Contains(e, "held by 1 socket in TIME_WAIT") ||
		!strings.Contains(e, "SO_REUSEADDR") {
		t.Errorf("alert says %q", e)
	}
}

func TestFirewallDropsSYNs(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	ns.DropSYNs(t, port)
	wire := ns.Tcpdump(t, "lo", fmt.Sprintf("tcp port %d", port))
	if _, err := rawConnect(t, ns, port, 1); err != nil {
		t.Fatal(err)
	}
	r := c.record("client", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleClient && r.RPort == port && r.Outcome == timeline.OutcomeTimeout
	})
	// The wire: every SYN the client sent, each one dropped.
	if syns := netnstest.Count(wire.Stop(t), "> 127.0.0.1."+strconv.Itoa(int(port))+":", "Flags [S]"); syns != r.SynRetries+1 {
		t.Errorf("tcpdump saw %d SYNs; the record says %d retries\n%s", syns, r.SynRetries, describe(r))
	}
	requireDrops(t, c)
	// Every SYN sent died in the rule: the first and each retry.
	if n := r.DroppedBy("NETFILTER_DROP"); n != r.SynRetries+1 {
		t.Errorf("NETFILTER_DROP x%d, want %d (the SYN and its retries): %+v", n, r.SynRetries+1, r.Drops)
	}
	want := fmt.Sprintf("a firewall rule on this host (nftables/iptables) dropped %d packets", r.SynRetries+1)
	if e := r.Explanation(); !strings.Contains(e, want) ||
		!strings.Contains(e, "TCP_SYNCNT=1 on the socket") {
		t.Errorf("explanation: %s", e)
	}
}

func TestNoLocalDropSaysSo(t *testing.T) {
	// SYNs that leave the host and die elsewhere: a veth peer that drops
	// them in its own namespace is "elsewhere" for this one.
	ns, far := netnstest.New(t), netnstest.New(t)
	ns.Veth(t, far, "10.99.0.1/24", "10.99.0.2/24")
	c := trace(t, ns, tracer.Config{})
	far.DropSYNs(t, 9)
	var err error
	ns.Do(func() {
		d := net.Dialer{Timeout: 20 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
		}}
		_, err = d.Dial("tcp", "10.99.0.2:9")
	})
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial: %v", err)
	}
	r := c.record("client", func(r *timeline.Connection) bool { return r.RPort == 9 })
	requireDrops(t, c)
	if e := r.Explanation(); !strings.Contains(e, "no drop was seen on this host") || strings.Contains(e, "firewall rule on this host") {
		t.Errorf("explanation: %s", e)
	}
}

func TestDropsOnLiveConnection(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	// One in three data segments to the server dies on input.
	undo := ns.Nft(t, "drop_data", fmt.Sprintf("\t\ttcp dport %d tcp flags & (syn | fin | rst) == 0 meta length > 100 numgen inc mod 3 == 0 drop", port))
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		n := 0
		for n < 1<<20 {
			k, err := srv.Read(buf)
			if err != nil {
				done <- err
				return
			}
			n += k
		}
		done <- nil
	}()
	chunk := make([]byte, 16<<10)
	for i := 0; i < 64; i++ {
		if _, err := cli.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	undo()
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	r := c.record("client", client(port))
	requireDrops(t, c)
	if n := r.DroppedBy("NETFILTER_DROP"); n == 0 || r.Retransmits == 0 {
		t.Errorf("drops %+v, retransmits %d; want NETFILTER_DROP counted and retransmissions", r.Drops, r.Retransmits)
	}
	if e := r.Explanation(); !strings.Contains(e, "NETFILTER_DROP") {
		t.Errorf("explanation: %s", e)
	}
}

func TestDataAfterCloseIsTheKernelsReset(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	// tcp_fin_timeout above TCP_TIMEWAIT_LEN (60 s) keeps the orphaned
	// server a full FIN_WAIT2 socket (tcp_rcv_state_process() arms its
	// keepalive timer for the difference) instead of handing it to a
	// timewait socket on the ACK of its FIN, which it does when the ACK
	// finds the socket not owned by the user: a race a slow kernel (QEMU)
	// loses now and then. The late data must reach the full socket.
	ns.Sysctl(t, "net/ipv4/tcp_fin_timeout", "120")
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	// The server closes; the client's data reaches a closed socket and
	// the server's kernel resets the connection itself.
	srv.Close()
	readEOF(t, cli)
	if _, err := cli.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	r := c.record("server", server(port))
	if !kernelRSTReason(t) {
		t.Skip("no RST reasons on this kernel")
	}
	if r.Reason != timeline.ReasonDataAfterClose || r.Outcome != timeline.OutcomeResetLocal || r.RSTReceived {
		t.Errorf("server: %s %s rst_received=%v: %s", r.Outcome, r.Reason, r.RSTReceived, r.Explanation())
	}
	if strings.Contains(r.Explanation(), "the application saw") {
		t.Errorf("an orphan's error reaches no application: %s", r.Explanation())
	}
	cli.Close()
}

func TestClientClosedInSynSentKeepsItsPort(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	ns.DropSYNs(t, port)
	fd, err := rawConnect(t, ns, port, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	local := uint16(sa.(*unix.SockaddrInet4).Port)
	unix.Close(fd)
	r := c.record("client", func(r *timeline.Connection) bool { return r.RPort == port })
	if r.LPort != local || local == 0 {
		t.Errorf("record's local port %d, the socket's %d", r.LPort, local)
	}
}

// requireDrops skips where the kernel has no drop reasons (before 5.17),
// and fails where it has them but tcptrace could not trace them.
func requireDrops(t *testing.T, c *capture) {
	t.Helper()
	if len(c.tr.Kernel().DropReasons) == 0 {
		t.Skip("this kernel's kfree_skb carries no drop reason (Linux < 5.17): tcptrace check says so")
	}
	if !c.tr.DropsTraced() {
		t.Fatalf("the kernel has drop reasons but the kfree_skb program did not load: %v", c.tr.Kernel().Refused)
	}
}

// fillAndClose makes a connection whose client never reads, fills the
// server's send queue, and closes the server: an orphan in FIN_WAIT1 that
// stays (the peer's window is shut), or, past tcp_max_orphans, an abort.
// It returns the client's port and the client, closed at cleanup.
func fillAndClose(t *testing.T, ns *netnstest.NS, ln *net.TCPListener) (uint16, net.Conn) {
	t.Helper()
	cli := dial(t, ns, ln.Addr().String())
	t.Cleanup(func() { cli.Close() })
	srv := accept(t, ln)
	raw, err := srv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	var werr error
	for i := 0; i < 256 && !errors.Is(werr, unix.EAGAIN); i++ { // at most 64 MiB
		raw.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), buf)
			return true // one try: EAGAIN ends the loop, no wait
		})
	}
	if !errors.Is(werr, unix.EAGAIN) {
		t.Fatalf("the send queue never filled: %v", werr)
	}
	port := uint16(srv.RemoteAddr().(*net.TCPAddr).Port)
	srv.Close()
	return port, cli
}

// orphans reads the host's orphaned TCP sockets from /proc/net/sockstat.
func orphans(t *testing.T) int {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	for i := range f {
		if f[i] == "orphan" && i+1 < len(f) {
			n, _ := strconv.Atoi(f[i+1])
			return n
		}
	}
	return 0
}

func TestOrphanLimitReset(t *testing.T) {
	netnstest.RequireRoot(t)
	const sysctl = "/proc/sys/net/ipv4/tcp_max_orphans"
	old, err := os.ReadFile(sysctl)
	if err != nil {
		t.Skipf("no %s: %v", sysctl, err)
	}
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, _ := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	// Host-wide: restored as soon as the test is done with it.
	if err := os.WriteFile(sysctl, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(sysctl, old, 0o644) })
	_, cli := fillAndClose(t, ns, ln)
	clients := []net.Conn{cli}
	deadline := time.Now().Add(waitTimeout)
	for orphans(t) == 0 && time.Now().Before(deadline) {
		c.drained()
	}
	// The kernel compares a cached count (updated every 100 ms) with the
	// limit: the next closes are reset once it counts the first orphan.
	var aborted *timeline.Connection
	for i := 0; i < 20 && aborted == nil && time.Now().Before(deadline); i++ {
		cport, cli := fillAndClose(t, ns, ln)
		clients = append(clients, cli)
		until := time.Now().Add(2 * time.Second)
		for aborted == nil && time.Now().Before(until) {
			c.drained()
			c.mu.Lock()
			for _, r := range c.recs {
				if r.Role == timeline.RoleServer && r.RPort == cport && r.Outcome != timeline.OutcomeOpen {
					aborted = r
				}
			}
			c.mu.Unlock()
		}
	}
	os.WriteFile(sysctl, old, 0o644)
	// A connection left orphaned goes on retransmitting to its client, and
	// its timers would fire at any moment, between the two tracers' stops
	// too (sameRecords): close the clients (a RST ends the orphan) and wait
	// until only the listener is left.
	for _, cli := range clients {
		cli.Close()
	}
	c.sockets("only the listener left", func(ss []timeline.Socket) bool { return len(ss) == 1 })
	if aborted == nil {
		t.Fatal("no close was reset past tcp_max_orphans=0")
	}
	if !kernelRSTReason(t) {
		t.Skip("no RST reasons on this kernel")
	}
	if aborted.Reason != timeline.ReasonAbortOnMemory || !strings.Contains(aborted.Explanation(), "tcp_max_orphans") {
		t.Errorf("aborted: %s %s (%s): %s", aborted.Outcome, aborted.Reason, aborted.RSTReason, aborted.Explanation())
	}
}
