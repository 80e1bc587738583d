package tracer_test

// Every network namespace: without a namespace filter, the socket scans
// (pre-existing connections and their owners, orphans, TIME_WAIT counts)
// walk each namespace of the host, not only tcptrace's own. These tracers
// filter on fixed ports instead, so that the host's other traffic stays out;
// each namespace is private, so the ports are free there.

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// testComm is the test binary's process name, as the kernel keeps it.
const testComm = "tracer.test"

// held creates a namespace with a process in it, as a pod's pause process
// holds the pod's namespace: scans find namespaces through processes (and
// /run/netns), not through one thread of a process, which is how
// netnstest holds its namespaces.
func held(t testing.TB) *netnstest.NS {
	t.Helper()
	ns := netnstest.New(t)
	var cmd *exec.Cmd
	var err error
	ns.Do(func() {
		cmd = exec.Command("sleep", "3600")
		// Killed if the namespace's thread (its parent thread) ends first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
	})
	if err != nil {
		t.Fatalf("starting a process in the namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return ns
}

// listenOn opens a listener on a fixed port of ns's loopback.
func listenOn(t *testing.T, ns *netnstest.NS, port uint16) *net.TCPListener {
	t.Helper()
	ln, _ := listen(t, ns, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	return ln
}

func inNS(ns *netnstest.NS, match func(*timeline.Connection) bool) func(*timeline.Connection) bool {
	return func(r *timeline.Connection) bool { return r.NetNS == ns.Inode && match(r) }
}

func mustOwner(t *testing.T, what string, r *timeline.Connection) {
	t.Helper()
	if r.PID != uint32(os.Getpid()) || r.Comm != testComm {
		t.Errorf("%s: owner pid %d comm %q, want %d %q\n%s", what, r.PID, r.Comm, os.Getpid(), testComm, describe(r))
	}
}

// Issue 10: a listener older than tcptrace, in a namespace other than
// tcptrace's own, keeps its owner when it closes; so do its accepted
// connections. And a connection older than tcptrace in a third namespace is
// seeded (a partial record, with its owner) and reported when it closes.
func TestOtherNetNSSeeded(t *testing.T) {
	const lnPort, connPort = 7101, 7102
	nsA, nsB := held(t), held(t)
	ln := listenOn(t, nsA, lnPort)
	oldLn := listenOn(t, nsB, connPort)
	cli := dial(t, nsB, oldLn.Addr().String())
	srv := accept(t, oldLn)

	c := traceWith(t, nil, tracer.Config{Ports: []uint16{lnPort, connPort}}, timeline.DefaultConfig(), true)

	// The listener: a new connection, then its close.
	in := dial(t, nsA, ln.Addr().String())
	acc := accept(t, ln)
	in.Close()
	readEOF(t, acc)
	acc.Close()
	ln.Close()
	mustOwner(t, "accepted connection", c.record("accepted connection", inNS(nsA, server(lnPort))))
	lr := c.record("listener", inNS(nsA, func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleListener && r.LPort == lnPort
	}))
	mustOwner(t, "listener", lr)
	if !lr.Partial || lr.Outcome != timeline.OutcomeClosed {
		t.Errorf("listener: want a partial closed record: %s", describe(lr))
	}

	// The older connection of the other namespace.
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	// Its role can't be told from a scan (both ends are local): the
	// client's end is the one whose remote port is the server's.
	cr := c.record("older client", inNS(nsB, func(r *timeline.Connection) bool { return r.RPort == connPort }))
	mustOwner(t, "older client", cr)
	if !cr.Partial || cr.Outcome != timeline.OutcomeClosed || cr.States[0] != timeline.StateEstablished {
		t.Errorf("older client: want a partial closed record starting in ESTABLISHED: %s", describe(cr))
	}
}

// An orphaned FIN_WAIT2 in another namespace is followed by the scans until
// that namespace's tcp_fin_timeout (2 s there; the host's is another) drops
// it, and the record's explanation quotes that namespace's value.
func TestOtherNetNSOrphanFollowed(t *testing.T) {
	const port = 7103
	ns := held(t)
	ns.Sysctl(t, "net/ipv4/tcp_fin_timeout", "2")
	c := traceWith(t, nil, tracer.Config{Ports: []uint16{port}}, stuckAfter(500*time.Millisecond), true)
	ln := listenOn(t, ns, port)
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	defer srv.Close()
	cli.Close()

	cr := c.record("client", inNS(ns, client(port)))
	if cr.Reason != timeline.ReasonClosedLocalOrphan || !strings.Contains(cr.Explanation(), "tcp_fin_timeout=2 s") {
		t.Errorf("reason %s: %s", cr.Reason, cr.Explanation())
	}
	a := c.alert("orphan", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertFinWait2Orphan && a.Cookie == cr.Cookie
	})
	if a.NetNS != ns.Inode || a.For() < int64(500*time.Millisecond) {
		t.Errorf("orphan alert %+v", a)
	}
	end := c.alert("orphan dropped", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertFinWait2OrphanEnded && a.Cookie == cr.Cookie
	})
	if end.Ended != "dropped" || end.For() < int64(1500*time.Millisecond) {
		t.Errorf("end %+v after %s", end, time.Duration(end.For()))
	}
}

// timeWaits makes n connections to port in ns that the client closes
// first: n TIME_WAIT sockets there.
func timeWaits(t *testing.T, ns *netnstest.NS, port uint16, n int) {
	t.Helper()
	ln := listenOn(t, ns, port)
	for range n {
		cli := dial(t, ns, ln.Addr().String())
		srv := accept(t, ln)
		cli.CloseWrite()
		readEOF(t, srv)
		srv.Close()
		readEOF(t, cli)
		cli.Close()
	}
}

// The TIME_WAIT counts add up the namespaces.
func TestOtherNetNSTimeWaitCounts(t *testing.T) {
	const port = 7104
	nsA, nsB := held(t), held(t)
	c := traceWith(t, nil, tracer.Config{Ports: []uint16{port}}, timeline.DefaultConfig(), true)
	timeWaits(t, nsA, port, 2)
	timeWaits(t, nsB, port, 3)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.tr.Scan(c.corr, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	total, top, ok := c.corr.TimeWait(5)
	if !ok || total != 5 || len(top) != 1 || top[0].Port != port || top[0].Count != 5 {
		t.Errorf("TIME_WAIT: total %d top %+v, want 5 to 127.0.0.1:%d (2 in one namespace, 3 in another)", total, top, port)
	}
}

// A namespace created after tcptrace started is found by a later scan.
func TestNetNSDiscoveredLater(t *testing.T) {
	const port = 7105
	c := traceWith(t, nil, tracer.Config{Ports: []uint16{port}}, timeline.DefaultConfig(), true)
	ns := held(t)
	timeWaits(t, ns, port, 1)
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	for {
		c.mu.Lock()
		err := c.tr.Scan(c.corr, time.Now().UnixNano())
		total, _, _ := c.corr.TimeWait(1)
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if total == 1 {
			return
		}
		select {
		case <-retry.C:
		case <-deadline.C:
			t.Fatalf("the TIME_WAIT socket of a namespace made after the start was not seen by a scan within %s", waitTimeout)
		}
	}
}

// An orphan of a namespace made after the last discovery makes the next
// scan look for that namespace: it is followed without waiting for the
// regular discovery.
func TestNetNSDiscoveredForOrphan(t *testing.T) {
	const port = 7106
	c := traceWith(t, nil, tracer.Config{Ports: []uint16{port}}, stuckAfter(300*time.Millisecond), true)
	ns := held(t)
	ns.Sysctl(t, "net/ipv4/tcp_fin_timeout", "2")
	ln := listenOn(t, ns, port)
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	defer srv.Close()
	cli.Close()
	cr := c.record("client", inNS(ns, client(port)))
	c.alert("orphan", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertFinWait2Orphan && a.Cookie == cr.Cookie
	})
	end := c.alert("orphan dropped", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertFinWait2OrphanEnded && a.Cookie == cr.Cookie
	})
	if end.Ended != "dropped" || end.NetNS != ns.Inode {
		t.Errorf("end %+v", end)
	}
}
