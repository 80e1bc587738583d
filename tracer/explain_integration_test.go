package tracer_test

// Integration tests of what tcptrace explains: owners, stuck states, alerts,
// orphans, retries, half-open and simultaneous close, pre-existing sockets.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

func stuckAfter(d time.Duration) timeline.Config {
	cfg := timeline.DefaultConfig()
	cfg.StuckAfter = int64(d)
	return cfg
}

// A server process and a client process with different names: each record
// names its own, although the accepted socket is born in softirq context
// (on loopback, the client's). The client runs in a cgroup of its own,
// which its records carry and a --cgroup filter selects.
func TestOwnersAndCgroup(t *testing.T) {
	ns := netnstest.New(t)
	cg, cgID := testCgroup(t, "tcptrace-test")
	c := trace(t, ns, tracer.Config{})
	byCgroup := trace(t, ns, tracer.Config{Cgroup: cgID})

	srv := startPeer(t, ns, "tt-server", "server", "")
	addr := srv.line(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	cli := startPeer(t, ns, "tt-client", "client", addr)
	// Into the cgroup before it creates its socket (sk_cgrp_data is set at
	// socket creation).
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(cli.cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(cli.stdin, "go")
	cli.wait(t)
	srv.wait(t)

	cr := c.record("client", client(uint16(port)))
	sr := c.record("server", server(uint16(port)))
	if cr.PID != uint32(cli.cmd.Process.Pid) || cr.Comm != "tt-client" {
		t.Errorf("client record owned by %s[%d], want tt-client[%d]", cr.Comm, cr.PID, cli.cmd.Process.Pid)
	}
	if sr.PID != uint32(srv.cmd.Process.Pid) || sr.Comm != "tt-server" {
		t.Errorf("server record owned by %s[%d], want tt-server[%d]", sr.Comm, sr.PID, srv.cmd.Process.Pid)
	}
	if cr.Cgroup != cgID || sr.Cgroup == cgID || sr.Cgroup == 0 {
		t.Errorf("cgroups: client %d server %d, want client %d", cr.Cgroup, sr.Cgroup, cgID)
	}
	var paths tracer.CgroupPaths
	root := tracer.CgroupRoot()
	if p := paths.Path(cr.Cgroup); p != strings.TrimPrefix(cg, root) {
		t.Errorf("cgroup path %q, want %q", p, strings.TrimPrefix(cg, root))
	}
	byCgroup.record("client, by cgroup", client(uint16(port)))
	byCgroup.drained()
	for _, e := range byCgroup.eventsSnapshot() {
		if e.Cgroup != cgID {
			t.Errorf("the cgroup filter let through an event of cgroup %d: %+v", e.Cgroup, e)
		}
	}
}

// The peer closes, the application never does: the accepted socket sits in
// CLOSE_WAIT and the client's in FIN_WAIT2 (it only shut down writing, so
// the socket is not orphaned and no timer will end it). Both are alerted on.
func TestStuckCloseWaitAndFinWait2(t *testing.T) {
	ns := netnstest.New(t)
	c := traceWith(t, ns, tracer.Config{}, stuckAfter(300*time.Millisecond), false)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	cli.CloseWrite()
	readEOF(t, srv)

	a := c.alert("CLOSE_WAIT", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertCloseWait })
	if a.LPort != port || a.PID != uint32(os.Getpid()) || a.Comm != "tracer.test" || a.For() < int64(300*time.Millisecond) {
		t.Errorf("CLOSE_WAIT alert %+v", a)
	}
	b := c.alert("FIN_WAIT2", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertFinWait2 })
	if b.RPort != port || b.State != timeline.StateFinWait2 {
		t.Errorf("FIN_WAIT2 alert %+v", b)
	}
	// Repeated at most once per interval, and not after the close.
	srv.Close()
	cli.Close()
	sr := c.record("server", server(port))
	if sr.Reason != timeline.ReasonClosedPeer {
		t.Errorf("server reason %s", sr.Reason)
	}
}

// The client closes, the peer never sends its FIN: the kernel keeps an
// orphaned FIN_WAIT2 timewait socket, which only a scan sees, until
// tcp_fin_timeout (2 s here) drops it.
func TestOrphanedFinWait2Dropped(t *testing.T) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/tcp_fin_timeout", "2")
	c := traceWith(t, ns, tracer.Config{}, stuckAfter(500*time.Millisecond), false)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	defer srv.Close()
	cli.Close()

	cr := c.record("client", client(port))
	if cr.Reason != timeline.ReasonClosedLocalOrphan || !strings.Contains(cr.Explanation(), "tcp_fin_timeout=2 s") {
		t.Errorf("reason %s: %s", cr.Reason, cr.Explanation())
	}
	a := c.alert("orphan", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertFinWait2Orphan })
	if a.Cookie != cr.Cookie || a.For() < int64(500*time.Millisecond) {
		t.Errorf("orphan alert %+v", a)
	}
	end := c.alert("orphan dropped", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertFinWait2OrphanEnded })
	if end.Ended != "dropped" || end.Cookie != cr.Cookie || end.For() < int64(1500*time.Millisecond) {
		t.Errorf("end %+v after %s", end, time.Duration(end.For()))
	}
	// The server, kept open, holds CLOSE_WAIT all along: both tracers
	// alert on it, the batched one once a flush scan sent its queue, which
	// a slow kernel (TCG) may delay past the orphan's end. Wait for both.
	c.alert("the server's CLOSE_WAIT", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertCloseWait && a.LPort == port
	})
}

// connect() to a port whose SYNs are dropped, with more retries than
// StuckAfter allows: an alert while it still tries.
func TestSynSentAlert(t *testing.T) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/tcp_syn_retries", "4")
	c := traceWith(t, ns, tracer.Config{}, stuckAfter(1200*time.Millisecond), false)
	ln, port := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	ns.DropSYNs(t, port)
	// A connect() left retrying until the alert came, however slow the
	// kernel (a guest under TCG): the application gives up only then.
	fd, err := connectNonblocking(ns, port, 0)
	if !errors.Is(err, unix.EINPROGRESS) {
		t.Fatalf("connect: %v", err)
	}
	a := c.alert("SYN_SENT", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertSynSent })
	unix.Close(fd)
	if a.RPort != port || a.Retries < 1 {
		t.Errorf("alert %+v", a)
	}
	// The application gave up first (it closed the socket).
	cr := c.record("client", client(port))
	if cr.Outcome != timeline.OutcomeAborted || cr.Reason != timeline.ReasonHandshakeAbandon || cr.SynRetries < 1 {
		t.Errorf("record %s", describe(cr))
	}
}

// The client's final ACK is lost: the server retransmits its SYN+ACK, the
// half-done handshake is alerted on, and once ACKs pass again the accepted
// socket's record carries the retries.
func TestSynAckRetries(t *testing.T) {
	ns := netnstest.New(t)
	c := traceWith(t, ns, tracer.Config{}, stuckAfter(500*time.Millisecond), false)
	ln, port := listen(t, ns, "127.0.0.1:0")
	undo := ns.Nft(t, "drop_acks", fmt.Sprintf("\t\ttcp dport %d tcp flags == ack drop", port))
	cli := dial(t, ns, ln.Addr().String()) // the client is ESTABLISHED at once
	defer cli.Close()
	a := c.alert("SYN_RECV", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertSynRecv })
	if a.LPort != port || a.Retries < 1 {
		t.Errorf("alert %+v", a)
	}
	undo()
	cli.Write([]byte("data completes the handshake")) // its ACK flag does
	srv := accept(t, ln)
	srv.Close()
	cli.Close()
	sr := c.record("server", server(port))
	if sr.SynAckRetries < 1 || !strings.Contains(sr.Explanation(), "final ACK") {
		t.Errorf("server record %s: %s", describe(sr), sr.Explanation())
	}
	if sr.Steps[0].Kind != timeline.StepSynAckRetransmit {
		t.Errorf("first step %+v, want the SYN+ACK retransmission", sr.Steps[0])
	}
}

// The server aborts and its RST is lost: the client still believes in the
// connection, sends data, and the server's stack, which has no socket for it
// any more, answers with RST.
func TestHalfOpen(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	undo := ns.Nft(t, "drop_rst", fmt.Sprintf("\t\ttcp sport %d tcp flags & rst == rst drop", port))
	srv.SetLinger(0)
	srv.Close()
	c.record("server", server(port))
	undo()
	cli.Write([]byte("hello?"))
	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeResetByPeer, timeline.ClosedByNone)
	// The socketless RST is traced since Linux 6.10 only.
	if kernelRSTReason(t) && cr.Reason != timeline.ReasonHalfOpen {
		t.Errorf("reason %s, want %s: %s", cr.Reason, timeline.ReasonHalfOpen, cr.Explanation())
	}
	cli.Close()
}

// Both ends close while FINs are dropped; when they pass again, each FIN
// reaches a peer in FIN_WAIT1: CLOSING, then TIME_WAIT. (The side whose FIN
// is acked first may already be a FIN_WAIT2 orphan when the other FIN comes,
// so at least one side shows the simultaneous close.)
func TestSimultaneousClose(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	undo := ns.Nft(t, "drop_fin", "\t\ttcp flags & fin == fin drop")
	cli.Close()
	srv.Close()
	// Both ends in FIN_WAIT1, as the kernel's tables say: their events may
	// still be queued in the sockets (they are sent when a socket closes).
	c.sockets("both ends in FIN_WAIT1", func(ss []timeline.Socket) bool {
		n := 0
		for _, s := range ss {
			if s.State == timeline.StateFinWait1 && (s.LPort == port || s.RPort == port) {
				n++
			}
		}
		return n == 2
	})
	undo()
	recs := c.records("both ends", func(r *timeline.Connection) bool {
		return r.LPort == port || r.RPort == port
	}, 2)
	both := 0
	for _, r := range recs {
		if r.Outcome != timeline.OutcomeClosed {
			t.Errorf("record %s", describe(r))
		}
		if r.ClosedBy == timeline.ClosedByBoth {
			both++
			if r.Reason != timeline.ReasonSimultaneous || r.LastState() != timeline.StateTimeWait {
				t.Errorf("simultaneous close record %s reason %s", describe(r), r.Reason)
			}
		}
	}
	if both == 0 {
		t.Errorf("no side shows the simultaneous close: %s / %s", describe(recs[0]), describe(recs[1]))
	}
}

// Connections that exist before tracing starts get records (partial, their
// current state, their owner from the process's files) and are watched:
// one stuck in CLOSE_WAIT is alerted on.
func TestPreExistingConnections(t *testing.T) {
	ns := netnstest.New(t)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	cli.Close()
	readEOF(t, srv) // srv is in CLOSE_WAIT, before tracing starts

	c := traceWith(t, ns, tracer.Config{}, stuckAfter(300*time.Millisecond), true)
	a := c.alert("pre-existing CLOSE_WAIT", func(a *timeline.Alert) bool { return a.Kind == timeline.AlertCloseWait })
	if !a.SinceUnknown || a.LPort != port || a.PID != uint32(os.Getpid()) || a.Comm != "tracer.test" {
		t.Errorf("alert %+v", a)
	}
	srv.Close()
	sr := c.record("pre-existing server", server(port))
	if !sr.Partial || sr.PID != uint32(os.Getpid()) || sr.Outcome != timeline.OutcomeClosed ||
		sr.States[0] != timeline.StateCloseWait {
		t.Errorf("record %s pid %d", describe(sr), sr.PID)
	}
}

// A scan counts TIME_WAIT sockets per remote endpoint (the summary's and
// SIGUSR1's figures).
func TestTimeWaitCounts(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	const n = 3
	for range n {
		cli := dial(t, ns, ln.Addr().String())
		srv := accept(t, ln)
		cli.CloseWrite() // the client closes first and reads the peer's FIN: TIME_WAIT
		readEOF(t, srv)
		srv.Close()
		readEOF(t, cli)
		cli.Close()
	}
	c.records("clients", client(port), n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.tr.Scan(c.corr, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	total, top, ok := c.corr.TimeWait(5)
	if !ok || total < n || len(top) == 0 || top[0].Port != port || top[0].Count != n {
		t.Errorf("TIME_WAIT: total %d top %+v", total, top)
	}
}

// With the TIME_WAIT ends followed (--events), the end of a TIME_WAIT is
// reported. Waiting 2MSL (60 s) is too long for a test, so the namespace has
// a single local port: a second connect() can only reuse the TIME_WAIT
// socket (tcp_tw_reuse, after about a second), which ends it.
func TestTimeWaitEnd(t *testing.T) {
	ns := netnstest.New(t)
	ln, port := listen(t, ns, "127.0.0.1:0") // before the range shrinks to one port
	only := uint16(40000)
	if port == only {
		only++
	}
	ns.Sysctl(t, "net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", only, only))
	ns.Sysctl(t, "net/ipv4/tcp_tw_reuse", "1")
	ccfg := timeline.DefaultConfig()
	ccfg.FollowTimeWait = true
	c := traceWith(t, ns, tracer.Config{}, ccfg, false)

	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	cli.CloseWrite() // the client closes first and reads the peer's FIN: TIME_WAIT
	readEOF(t, srv)
	srv.Close()
	readEOF(t, cli)
	cli.Close()
	first := c.record("first client", client(port))
	if first.LastState() != timeline.StateTimeWait || first.LPort != only {
		t.Fatalf("first client %s", describe(first))
	}

	// The only local port is held by the TIME_WAIT socket until the kernel
	// allows its reuse: retry connect() until it does, within a deadline.
	var again net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for again == nil {
		var err error
		ns.Do(func() { again, err = net.Dial("tcp", ln.Addr().String()) })
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("the TIME_WAIT port was never reused: %v", err)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond) // a bounded retry of a refused connect
		}
	}
	defer again.Close()
	a := c.alert("TIME_WAIT ended", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertTimeWaitEnded && a.Cookie == first.Cookie
	})
	// Reuse waits tcp_tw_reuse_delay (1000 ms) on recent kernels, but older
	// ones (6.1) compare whole seconds: it may come sooner there.
	if a.State != timeline.StateTimeWait || a.For() <= 0 || a.Since != first.End {
		t.Errorf("notice %+v after %s", a, time.Duration(a.For()))
	}
}

// The start-up scan keeps to the cgroup filter as events do: of two
// connections older than tracing, only the one a process in the cgroup made
// is seeded.
func TestSeedKeepsToCgroupFilter(t *testing.T) {
	ns := netnstest.New(t)
	cg, cgID := testCgroup(t, "tcptrace-seed")
	ln, port := listen(t, ns, "127.0.0.1:0")
	inside := startPeer(t, ns, "tt-inside", "holder", ln.Addr().String())
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(inside.cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(inside.stdin, "go")
	if l := inside.line(t); l != "connected" {
		t.Fatalf("peer: %s", l)
	}
	accept(t, ln)
	outside := dial(t, ns, ln.Addr().String()) // the test's own cgroup
	defer outside.Close()
	accept(t, ln)

	c := traceWith(t, ns, tracer.Config{Cgroup: cgID}, timeline.DefaultConfig(), true)
	inside.stdin.Close()
	inside.wait(t)
	r := c.record("the client in the cgroup", client(port))
	if !r.Partial || r.Cgroup != cgID || r.Comm != "tt-inside" {
		t.Errorf("record %s cgroup %d comm %q", describe(r), r.Cgroup, r.Comm)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corr.Flush()
	for _, r := range c.recs {
		if r.Cgroup != cgID {
			t.Errorf("a record outside the cgroup: %s cgroup %d", describe(r), r.Cgroup)
		}
	}
}

// testCgroup creates a cgroup v2 directory for the test (removed at its
// end) and returns its path and id.
func testCgroup(t *testing.T, name string) (string, uint64) {
	t.Helper()
	cg := filepath.Join(tracer.CgroupRoot(), fmt.Sprintf("%s-%d", name, os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	id, err := tracer.CgroupID(cg)
	if err != nil {
		t.Fatal(err)
	}
	return cg, id
}
