package tracer_test

// Integration tests: the real BPF programs on the running kernel, real TCP
// connections, each test in its own network namespace and the tracer
// filtered to that namespace's inode.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// waitTimeout bounds every wait for a record; TCG-emulated kernels are slow.
const waitTimeout = 30 * time.Second

// capture runs a tracer and keeps every record and event it produces.
type capture struct {
	t      *testing.T
	tr     *tracer.Tracer
	corr   *timeline.Correlator
	mu     sync.Mutex
	recs   []*timeline.Connection
	alerts []timeline.Alert
	events []timeline.Event
	lost   uint64
	misses uint64    // the tracer's recursion misses, read as it stopped
	ticks  int       // ring buffer drains so far
	now    time.Time // of the last tick
	notify chan struct{}
	lw     *tracer.ListenWatch
	// shadow, when set, traces the same namespace with events one by one;
	// alert waits for both to raise it (see traceWith).
	shadow *capture
}

func (c *capture) Event(e *timeline.Event) {
	c.mu.Lock()
	c.events = append(c.events, *e)
	c.corr.Add(e)
	c.mu.Unlock()
	c.wake()
}

// Stalled and StallScanEnded take the flush scans' stall notices.
func (c *capture) Stalled(e *timeline.Event) {
	c.mu.Lock()
	c.corr.Stalled(e)
	c.mu.Unlock()
	c.wake()
}

func (c *capture) StallScanEnded(now int64) {
	c.mu.Lock()
	c.corr.StallScanEnded(now)
	c.mu.Unlock()
}

func (c *capture) Tick(now time.Time) {
	c.mu.Lock()
	c.ticks++
	c.now = now
	c.corr.Advance(now.UnixNano())
	// As the CLI does: scans follow orphaned FIN_WAIT2 sockets and
	// handshakes waiting for their final ACK.
	if c.corr.WantsScan() {
		if err := c.tr.Follow(c.corr, now.UnixNano()); err != nil {
			c.t.Errorf("scan: %v", err)
		}
	}
	// ... and look at the listeners' accept queues when they dropped.
	if err := c.tr.PollListeners(c.lw, c.corr, now); err != nil {
		c.t.Errorf("listeners: %v", err)
	}
	c.mu.Unlock()
	c.wake()
}

func (c *capture) Lost(n uint64) {
	c.mu.Lock()
	c.lost += n
	c.mu.Unlock()
}

func (c *capture) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// trace starts a tracer for ns with cfg's other filters, stopped at cleanup.
func trace(t *testing.T, ns *netnstest.NS, cfg tracer.Config) *capture {
	t.Helper()
	return traceWith(t, ns, cfg, timeline.DefaultConfig(), false)
}

// traceWith also sets the correlator's config and, with seed, gives records
// to the connections that exist already, as the CLI does.
// A nil ns leaves the namespace filter off: the scans walk every namespace.
//
// Unless cfg asks for events one by one, a second tracer runs beside it on
// the same namespace with events one by one (as --events has them): both see
// the same kernel events, one queued per socket and sent in batches, the
// other sent as they happen. At cleanup their records, alerts and counts
// must be the same (differential.go): every scenario that uses trace is a
// test of the batched path against the one-by-one path.
func traceWith(t *testing.T, ns *netnstest.NS, cfg tracer.Config, ccfg timeline.Config, seed bool) *capture {
	t.Helper()
	// Both seed at the same moment: a seeded record starts then.
	seedAt := time.Now().UnixNano()
	c, stop := startCapture(t, ns, cfg, ccfg, seed, seedAt)
	var shadowStop func()
	// Only in a namespace of the test's own: unfiltered, the two would see
	// the other tests' traffic from different moments on.
	if !cfg.SendAtOnce && ns != nil {
		cfg.SendAtOnce = true
		c.shadow, shadowStop = startCapture(t, ns, cfg, ccfg, seed, seedAt)
	}
	t.Cleanup(func() {
		if c.shadow == nil {
			stop()
			return
		}
		// What the test set going may still be under way in the kernel
		// (softirqs deferred under load): both must see the same events,
		// so wait until the one-by-one tracer has seen none for two
		// drains of its ring buffer, then stop both.
		c.shadow.settle()
		stop()
		shadowStop()
		if !t.Failed() {
			sameRecords(t, c, c.shadow)
		}
	})
	return c
}

// startCapture starts a tracer and its correlator; stop ends them and
// flushes the correlator.
func startCapture(t *testing.T, ns *netnstest.NS, cfg tracer.Config, ccfg timeline.Config, seed bool, seedAt int64) (*capture, func()) {
	t.Helper()
	if ns != nil {
		cfg.NetNS, cfg.NetNSPath = ns.Inode, ns.Path
	}
	cfg.PollInterval = 20 * time.Millisecond
	// The tracer sends the queued events of a connection held in a
	// watched state in time for its alert, as the CLI does.
	cfg.StuckAfter = time.Duration(ccfg.StuckAfter)
	tr, err := tracer.New(cfg)
	if err != nil {
		t.Fatalf("tracer.New: %v", err)
	}
	c := &capture{t: t, tr: tr, notify: make(chan struct{}, 1), lw: tracer.NewListenWatch()}
	sys := tr.Sysctls()
	ccfg.ScansNetNS = tr.ScansNetNS
	ccfg.ScanNetNS = tr.ScanNetNS
	ccfg.DropsTraced = tr.DropsTraced()
	// emit and the alert callback run with c.mu held (from Event, Tick or Flush).
	c.corr = timeline.New(ccfg, func(conn *timeline.Connection) {
		c.recs = append(c.recs, conn.Clone())
	})
	c.corr.OnAlert(func(a *timeline.Alert) { c.alerts = append(c.alerts, *a) })
	c.corr.SetSysctls(sys)
	if seed {
		if err := tr.Seed(c.corr, seedAt); err != nil {
			t.Fatalf("Seed: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, c) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		// Read while the programs are loaded: Close unloads them.
		c.misses = tr.RecursionMisses()
		if c.misses > 0 {
			// Shown when the test fails: an event the kernel skipped
			// explains a record that lacks it.
			t.Logf("the kernel skipped %d program runs of this tracer (recursion misses)", c.misses)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := tr.Close(); err != nil { // idempotent
			t.Errorf("second Close: %v", err)
		}
		if c.lost > 0 {
			t.Errorf("%d events lost", c.lost)
		}
		c.mu.Lock()
		c.corr.Flush()
		c.mu.Unlock()
	}
	return c, stop
}

// record waits for the record that matches, or fails the test.
func (c *capture) record(desc string, match func(*timeline.Connection) bool) *timeline.Connection {
	c.t.Helper()
	return c.records(desc, match, 1)[0]
}

// records waits for n records that match, or fails the test.
func (c *capture) records(desc string, match func(*timeline.Connection) bool, n int) []*timeline.Connection {
	c.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		var found []*timeline.Connection
		for _, r := range c.recs {
			if match(r) {
				found = append(found, r)
			}
		}
		c.mu.Unlock()
		if len(found) >= n {
			return found
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, r := range c.recs {
				c.t.Logf("have: %s", describe(r))
			}
			c.t.Fatalf("%d of %d records for %s within %s", len(found), n, desc, waitTimeout)
			return nil
		}
	}
}

// drained waits until the tracer has drained its ring buffer twice from
// now on: everything the kernel emitted before the call has been read.
func (c *capture) drained() {
	c.t.Helper()
	c.mu.Lock()
	target := c.ticks + 2
	c.mu.Unlock()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		n := c.ticks
		c.mu.Unlock()
		if n >= target {
			return
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.t.Fatal("tracer did not drain its ring buffer")
		}
	}
}

// settle waits, within waitTimeout, until two drains of the ring buffer in
// a row brought no event.
func (c *capture) settle() {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		before := len(c.events)
		c.mu.Unlock()
		c.drained()
		c.mu.Lock()
		after := len(c.events)
		c.mu.Unlock()
		if after == before {
			return
		}
	}
	c.t.Errorf("events still coming after %s", waitTimeout)
}

// sockets waits until a scan of the traced namespace's TCP sockets
// satisfies cond, polling at every drain of the ring buffer.
func (c *capture) sockets(desc string, cond func([]timeline.Socket) bool) {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var ss []timeline.Socket
		if err := c.tr.ScanSockets(func(s *timeline.Socket) { ss = append(ss, *s) }); err != nil {
			c.t.Fatalf("scanning sockets: %v", err)
		}
		if cond(ss) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no sockets for %s within %s", desc, waitTimeout)
		}
		c.drained()
	}
}

// alert waits for an alert that matches, or fails the test. With a
// shadow, it also waits for the shadow's: a test that goes on at the first
// would end the state before the other's periodic check raised it.
func (c *capture) alert(desc string, match func(*timeline.Alert) bool) timeline.Alert {
	c.t.Helper()
	if c.shadow != nil {
		defer c.shadow.alert(desc+" (events one by one)", match)
	}
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, a := range c.alerts {
			if match(&a) {
				c.mu.Unlock()
				return a
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, a := range c.alerts {
				c.t.Logf("have alert: %s %s for %s", a.Kind, a.State, time.Duration(a.For()))
			}
			c.t.Fatalf("no alert for %s within %s", desc, waitTimeout)
			return timeline.Alert{}
		}
	}
}

// event waits until the events seen so far satisfy cond.
func (c *capture) event(desc string, cond func([]timeline.Event) bool) {
	c.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond(c.events)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.t.Fatalf("no events for %s within %s", desc, waitTimeout)
		}
	}
}

func (c *capture) eventsSnapshot() []timeline.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

func describe(r *timeline.Connection) string {
	return fmt.Sprintf("%s %s:%d -> %s:%d %s by=%s states=%v syn=%d rst_sent=%v(%s) rst_recv=%v errno=%d partial=%v",
		r.Role, r.LAddr, r.LPort, r.RAddr, r.RPort, r.Outcome, r.ClosedBy, r.States, r.SynRetries,
		r.RSTSent, r.RSTReason, r.RSTReceived, r.Errno, r.Partial)
}

func client(port uint16) func(*timeline.Connection) bool {
	return func(r *timeline.Connection) bool { return r.Role == timeline.RoleClient && r.RPort == port }
}

func server(port uint16) func(*timeline.Connection) bool {
	return func(r *timeline.Connection) bool { return r.Role == timeline.RoleServer && r.LPort == port }
}

// listen opens a listener in ns on addr ("127.0.0.1:0", "[::1]:0").
func listen(t *testing.T, ns *netnstest.NS, addr string) (*net.TCPListener, uint16) {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener), uint16(ln.Addr().(*net.TCPAddr).Port)
}

func dial(t *testing.T, ns *netnstest.NS, addr string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	var err error
	ns.Do(func() { c, err = net.Dial("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func accept(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(waitTimeout))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pair makes a connection in ns and returns both ends.
func pair(t *testing.T, ns *netnstest.NS, listenAddr string) (cli, srv *net.TCPConn, port uint16) {
	t.Helper()
	ln, port := listen(t, ns, listenAddr)
	cli = dial(t, ns, ln.Addr().String())
	srv = accept(t, ln)
	return cli, srv, port
}

func readEOF(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("reading to EOF: %v", err)
	}
}

func mustStates(t *testing.T, r *timeline.Connection, want ...timeline.State) {
	t.Helper()
	if !slices.Equal(r.States, want) {
		t.Errorf("states = %v, want %v\n%s", r.States, want, describe(r))
	}
}

func mustOutcome(t *testing.T, r *timeline.Connection, want timeline.Outcome, by timeline.Closer) {
	t.Helper()
	if r.Outcome != want || r.ClosedBy != by {
		t.Errorf("outcome = %s by %q, want %s by %q\n%s", r.Outcome, r.ClosedBy, want, by, describe(r))
	}
}

func lastStep(r *timeline.Connection) timeline.Step { return r.Steps[len(r.Steps)-1] }

// The client closes first and the server closes only after the client's
// record is out: the client's socket is orphaned with its FIN acked, so the
// kernel hands it to a timewait socket in FIN_WAIT2, not TIME_WAIT.
func TestClientClosesFirst(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	cli.Close()

	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateEstablished, timeline.StateFinWait1, timeline.StateFinWait2)
	if s := lastStep(cr); !s.TimewaitSocket || s.To != timeline.StateFinWait2 {
		t.Errorf("last step = %+v, want the hand-off to a FIN_WAIT2 timewait socket", s)
	}
	if cr.Handshake <= 0 || cr.Handshake > int64(time.Second) {
		t.Errorf("handshake = %d ns", cr.Handshake)
	}
	if cr.PID != uint32(os.Getpid()) {
		t.Errorf("client pid = %d, want %d", cr.PID, os.Getpid())
	}
	if cr.Partial || cr.LPort == 0 || cr.LAddr.String() != "127.0.0.1" || cr.NetNS != ns.Inode {
		t.Errorf("bad tuple or flags: %s netns=%d", describe(cr), cr.NetNS)
	}
	// Figures from tcp_sock: 5 data bytes sent, an RTT measured, the first
	// sample being the handshake's.
	if cr.BytesSent != 5 || cr.SRTT == 0 || cr.HandshakeRTT == 0 {
		t.Errorf("figures: sent %d srtt %dus handshake rtt %dus", cr.BytesSent, cr.SRTT, cr.HandshakeRTT)
	}
	if cr.Reason != timeline.ReasonClosedLocalOrphan || !strings.Contains(cr.Explanation(), "tcp_fin_timeout=60") {
		t.Errorf("reason %s: %s", cr.Reason, cr.Explanation())
	}

	readEOF(t, srv)
	srv.Close()
	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeClosed, timeline.ClosedByPeer)
	mustStates(t, sr, timeline.StateSynRecv, timeline.StateEstablished, timeline.StateCloseWait,
		timeline.StateLastAck, timeline.StateClose)
	if sr.PID != uint32(os.Getpid()) {
		t.Errorf("server pid = %d, want %d (the listener's owner)", sr.PID, os.Getpid())
	}
	if sr.RPort != cr.LPort {
		t.Errorf("server's peer port %d != client's port %d", sr.RPort, cr.LPort)
	}
	if sr.BytesReceived != 5 || sr.BytesSent != 0 || sr.Reason != timeline.ReasonClosedPeer {
		t.Errorf("server received %d bytes, reason %s", sr.BytesReceived, sr.Reason)
	}
}

// shutdown(SHUT_WR), then read to EOF: the peer's FIN reaches the socket in
// FIN_WAIT2 while it is still open, so it enters real TIME_WAIT.
func TestHalfCloseTimeWait(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	if err := cli.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readEOF(t, srv)
	if _, err := srv.Write([]byte("response after the client's FIN")); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	readEOF(t, cli)
	cli.Close()

	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateEstablished, timeline.StateFinWait1,
		timeline.StateFinWait2, timeline.StateTimeWait)
	if s := lastStep(cr); !s.TimewaitSocket || s.From != timeline.StateFinWait2 {
		t.Errorf("last step = %+v, want FIN_WAIT2 handed to a TIME_WAIT timewait socket", s)
	}
	if cr.Reason != timeline.ReasonHalfClose || !cr.HalfClose {
		t.Errorf("reason %s, want %s", cr.Reason, timeline.ReasonHalfClose)
	}
	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeClosed, timeline.ClosedByPeer)
}

func TestServerClosesFirst(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	ln.Close()
	srv.Write([]byte("bye"))
	srv.Close()
	readEOF(t, cli)
	cli.Close()

	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeClosed, timeline.ClosedByPeer)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateEstablished, timeline.StateCloseWait,
		timeline.StateLastAck, timeline.StateClose)
	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	if sr.States[0] != timeline.StateSynRecv || !slices.Contains(sr.States, timeline.StateFinWait1) {
		t.Errorf("server states = %v", sr.States)
	}
	// Data bytes, without the SYN and FIN the kernel's counters include.
	if sr.BytesSent != 3 || cr.BytesReceived != 3 || cr.BytesSent != 0 {
		t.Errorf("server sent %d, client received %d and sent %d; want 3, 3, 0", sr.BytesSent, cr.BytesReceived, cr.BytesSent)
	}
	lr := c.record("listener", func(r *timeline.Connection) bool { return r.Role == timeline.RoleListener })
	mustOutcome(t, lr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	mustStates(t, lr, timeline.StateListen, timeline.StateClose)
	if lr.LPort != port {
		t.Errorf("listener port = %d, want %d", lr.LPort, port)
	}
}

func TestRefused(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	ln.Close() // the port is now closed

	var err error
	ns.Do(func() { _, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)) })
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial error = %v, want ECONNREFUSED", err)
	}
	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeRefused, timeline.ClosedByNone)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateClose)
	if !cr.RSTReceived || syscall.Errno(cr.Errno) != syscall.ECONNREFUSED {
		t.Errorf("want RST received and ECONNREFUSED: %s", describe(cr))
	}
	if cr.Reason != timeline.ReasonNothingListening || !strings.Contains(cr.Explanation(), fmt.Sprintf("nothing listening on 127.0.0.1:%d", port)) {
		t.Errorf("reason %s: %s", cr.Reason, cr.Explanation())
	}
	if !slices.ContainsFunc(cr.Steps, func(s timeline.Step) bool {
		return s.Kind == timeline.StepError && syscall.Errno(s.Errno) == syscall.ECONNREFUSED
	}) {
		t.Errorf("no error step with ECONNREFUSED: %+v", cr.Steps)
	}
	// The stack answered the SYN with a RST from no socket. Before Linux
	// 6.10 tcp_send_reset fired only for full sockets (it gained its reason
	// argument in the same release).
	if !kernelRSTReason(t) {
		return
	}
	ev := c.eventsSnapshot()
	if !slices.ContainsFunc(ev, func(e timeline.Event) bool {
		return e.Type == timeline.EventRSTSent && e.NoSocket && e.LPort == port
	}) {
		t.Errorf("no socketless RST event for port %d", port)
	}
}

// synTimeout connects to a port whose SYNs are dropped, with
// tcp_syn_retries=2, and returns the client record.
func synTimeout(t *testing.T, linear string) (*timeline.Connection, bool) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/tcp_syn_retries", "2")
	hasLinear := ns.Sysctl(t, "net/ipv4/tcp_syn_linear_timeouts", linear)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	ns.DropSYNs(t, port)

	var err error
	start := time.Now()
	ns.Do(func() { _, err = net.DialTimeout("tcp", ln.Addr().String(), 60*time.Second) })
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial error = %v after %s, want ETIMEDOUT", err, time.Since(start))
	}
	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeTimeout, timeline.ClosedByNone)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateClose)
	// The explanation names the sysctls in force in the namespace.
	want := "tcp_syn_retries=2"
	if hasLinear {
		want += ", tcp_syn_linear_timeouts=" + linear
	}
	if cr.Reason != timeline.ReasonSynTimeout || !strings.Contains(cr.Explanation(), want) {
		t.Errorf("reason %s: %s; want it to say %q", cr.Reason, cr.Explanation(), want)
	}
	return cr, hasLinear
}

func synIntervals(r *timeline.Connection) []time.Duration {
	var out []time.Duration
	for _, s := range r.Steps {
		if s.Kind == timeline.StepSynRetransmit {
			out = append(out, time.Duration(s.Since))
		}
	}
	return out
}

func near(d, want time.Duration) bool {
	return d > want-300*time.Millisecond && d < want+500*time.Millisecond
}

// The textbook backoff: with tcp_syn_linear_timeouts=0 (or a kernel without
// it), tcp_syn_retries=2 means retries after 1 s and 2 s more, then failure
// after 4 s more: 7 s in all.
func TestSynTimeoutExponential(t *testing.T) {
	t.Parallel()
	r, _ := synTimeout(t, "0")
	iv := synIntervals(r)
	if r.SynRetries != 2 || len(iv) != 2 || !near(iv[0], time.Second) || !near(iv[1], 2*time.Second) {
		t.Errorf("SYN retries = %d at intervals %v, want 2 at ~1s, ~2s", r.SynRetries, iv)
	}
	if d := time.Duration(r.Duration()); !near(d, 7*time.Second) {
		t.Errorf("gave up after %s, want ~7s", d)
	}
}

// Linux 6.15+ defaults tcp_syn_linear_timeouts to 4: the first SYN retries
// come every second, and the give-up time is still the exponential budget
// of tcp_syn_retries, so more retries fit in it than tcp_syn_retries says.
func TestSynTimeoutLinear(t *testing.T) {
	t.Parallel()
	r, hasLinear := synTimeout(t, "4")
	iv := synIntervals(r)
	if !hasLinear {
		t.Logf("no tcp_syn_linear_timeouts on this kernel: intervals %v", iv)
		if r.SynRetries != 2 {
			t.Errorf("SYN retries = %d, want 2", r.SynRetries)
		}
		return
	}
	if r.SynRetries < 3 {
		t.Errorf("SYN retries = %d, want more than tcp_syn_retries=2 with linear timeouts", r.SynRetries)
	}
	for i, d := range iv[:min(4, len(iv))] {
		if !near(d, time.Second) {
			t.Errorf("retry #%d after %s, want ~1s (linear)", i+1, d)
		}
	}
	if d := time.Duration(r.Duration()); !near(d, 7*time.Second) {
		t.Errorf("gave up after %s, want ~7s (the exponential budget of 2 retries)", d)
	}
}

// close() with SO_LINGER {on, 0} aborts: this host sends a RST.
func TestLingerZero(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	defer srv.Close()
	if err := cli.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	cli.Close()

	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeResetLocal, timeline.ClosedByNone)
	mustStates(t, cr, timeline.StateSynSent, timeline.StateEstablished, timeline.StateClose)
	if !cr.RSTSent || cr.RSTReceived {
		t.Errorf("want RST sent only: %s", describe(cr))
	}
	if c := kernelRSTReason(t); c && cr.RSTReason != "TCP_STATE" {
		// tcp_disconnect() sends it with SK_RST_REASON_TCP_STATE.
		t.Errorf("RST reason = %q, want TCP_STATE", cr.RSTReason)
	}
	if want := timeline.ReasonLingerAbort; kernelRSTReason(t) && cr.Reason != want {
		t.Errorf("reason %s, want %s", cr.Reason, want)
	}
	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeResetByPeer, timeline.ClosedByNone)
	if !sr.RSTReceived || syscall.Errno(sr.Errno) != syscall.ECONNRESET {
		t.Errorf("want RST received, ECONNRESET: %s", describe(sr))
	}
}

// close() with unread data in the receive queue aborts too (RFC 2525).
func TestCloseWithUnreadData(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	defer cli.Close()
	cli.Write([]byte("never read"))
	// The data must be queued at the server before it closes.
	waitReadable(t, srv)
	srv.Close()

	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeResetLocal, timeline.ClosedByNone)
	if kernelRSTReason(t) && sr.RSTReason != "TCP_ABORT_ON_CLOSE" {
		t.Errorf("RST reason = %q, want TCP_ABORT_ON_CLOSE", sr.RSTReason)
	}
	if kernelRSTReason(t) && sr.Reason != timeline.ReasonUnreadData {
		t.Errorf("reason %s, want %s", sr.Reason, timeline.ReasonUnreadData)
	}
	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeResetByPeer, timeline.ClosedByNone)
}

// waitReadable waits until c has bytes queued, without consuming them.
func waitReadable(t *testing.T, c *net.TCPConn) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return n > 0 || (err != nil && err != syscall.EAGAIN)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func kernelRSTReason(t *testing.T) bool {
	k, err := tracer.ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	return k.RSTReason
}

func TestIPv6(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "[::1]:0")
	cli.Close()
	readEOF(t, srv)
	srv.Close()

	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	if cr.Family() != "ipv6" || cr.LAddr.String() != "::1" || cr.RAddr.String() != "::1" {
		t.Errorf("family %s %s -> %s, want ipv6 ::1 -> ::1", cr.Family(), cr.LAddr, cr.RAddr)
	}
	sr := c.record("server", server(port))
	mustOutcome(t, sr, timeline.OutcomeClosed, timeline.ClosedByPeer)
}

// Kernel-side filters: what they drop never reaches user space.
func TestKernelFilters(t *testing.T) {
	ns := netnstest.New(t)
	ln1, want := listen(t, ns, "127.0.0.1:0")
	ln2, other := listen(t, ns, "127.0.0.1:0")
	ln6, v6 := listen(t, ns, "[::1]:0")
	c := trace(t, ns, tracer.Config{Ports: []uint16{want, v6}, Family: 4})

	for _, ln := range []*net.TCPListener{ln2, ln6, ln1} { // the matching one last
		cli := dial(t, ns, ln.Addr().String())
		srv := accept(t, ln)
		cli.Close()
		srv.Close()
	}
	// Its last events carry local port 0 (released before X -> CLOSE): they
	// pass because the connection matched earlier, so the record ends.
	mustOutcome(t, c.record("client of the filtered-in port", client(want)),
		timeline.OutcomeClosed, timeline.ClosedByLocal)
	for _, e := range c.eventsSnapshot() {
		if e.LPort == other || e.RPort == other {
			t.Errorf("event for filtered-out port %d reached user space: %+v", other, e)
		}
		if e.LAddr.Is6() {
			t.Errorf("IPv6 event reached user space despite Family 4: %+v", e)
		}
	}
	// The traffic of another namespace is not seen either.
	ns2 := netnstest.New(t)
	lnX, portX := listen(t, ns2, fmt.Sprintf("127.0.0.1:%d", want))
	dial(t, ns2, lnX.Addr().String()).Close()
	cli := dial(t, ns, ln1.Addr().String()) // a marker in our namespace, after it
	cli.Close()
	c.records("both clients in our namespace", client(want), 2)
	for _, e := range c.eventsSnapshot() {
		if e.NetNS != ns.Inode {
			t.Errorf("event from namespace %d (port %d) reached a tracer filtered to %d", e.NetNS, portX, ns.Inode)
		}
	}
}

// --pid and --comm: the owner is known in the kernel, so the filter drops
// the events of other processes' connections there.
func TestOwnerFilters(t *testing.T) {
	ns := netnstest.New(t)
	ours := trace(t, ns, tracer.Config{PID: uint32(os.Getpid())})
	byComm := trace(t, ns, tracer.Config{Comm: "tracer.test"})
	otherPID := trace(t, ns, tracer.Config{PID: 1})
	otherComm := trace(t, ns, tracer.Config{Comm: "nginx"})

	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	ours.record("client, by pid", client(port))
	ours.record("server, by pid (the listener's owner)", server(port))
	byComm.record("client, by comm", client(port))
	for _, c := range []*capture{otherPID, otherComm} {
		c.drained()
		if ev := c.eventsSnapshot(); len(ev) != 0 {
			t.Errorf("a filter for another process let %d events through: %+v", len(ev), ev[0])
		}
	}
}

// A connection that existed before tracing started is still reported.
func TestPartialConnection(t *testing.T) {
	ns := netnstest.New(t)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	c := trace(t, ns, tracer.Config{})
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	r := c.record("pre-existing client", func(r *timeline.Connection) bool { return r.RPort == port })
	if !r.Partial || r.Outcome != timeline.OutcomeClosed || r.States[0] != timeline.StateEstablished {
		t.Errorf("want a partial closed record starting in ESTABLISHED: %s", describe(r))
	}
}

// A failure half-way through New is an error, not a panic, and leaves
// nothing attached.
func TestNewFailsCleanly(t *testing.T) {
	netnstest.RequireRoot(t)
	_, err := tracer.New(tracer.Config{NetNSPath: "/nonexistent/netns"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Fatalf("err = %v, want one naming the namespace path", err)
	}
}

// A reader that falls behind: the kernel counts the events it could not
// queue, the loader reports them, and the records that were live then are
// flagged incomplete rather than silently wrong.
func TestLostEventsCountedAndFlagged(t *testing.T) {
	ns := netnstest.New(t)
	// One by one (as with --events): a loss then cuts into the records of
	// connections live at the time. Queued per socket, the live one's
	// events would wait in its storage and come whole.
	tr, err := tracer.New(tracer.Config{NetNS: ns.Inode, NetNSPath: ns.Path,
		RingBytes: os.Getpagesize(), PollInterval: 20 * time.Millisecond, SendAtOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	// Nobody reads yet. One connection stays open across the loss...
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	// ...while many more overflow the one-page ring buffer.
	ln, _ := listen(t, ns, "127.0.0.1:0")
	for i := 0; i < 50 && tr.LostEvents() == 0; i++ {
		c := dial(t, ns, ln.Addr().String())
		accept(t, ln).Close()
		c.Close()
	}
	if tr.LostEvents() == 0 {
		t.Fatal("no event lost with a one-page ring buffer and no reader")
	}

	c := &capture{t: t, tr: tr, notify: make(chan struct{}, 1), lw: tracer.NewListenWatch()}
	c.corr = timeline.New(timeline.DefaultConfig(), func(conn *timeline.Connection) { c.recs = append(c.recs, conn.Clone()) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, lostMarker{c}) }()
	defer func() {
		cancel()
		<-done
	}()
	c.event("the loss reported", func([]timeline.Event) bool { return c.lost > 0 })
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	r := c.record("the connection live during the loss", client(port))
	// Its start was queued before the overflow, its end after: complete
	// as far as it shows, but flagged, since events were lost meanwhile.
	if !r.Incomplete || r.Partial {
		t.Errorf("record %s incomplete=%v", describe(r), r.Incomplete)
	}
	c.mu.Lock()
	reported := c.lost
	c.mu.Unlock()
	if reported != tr.LostEvents() {
		t.Errorf("reported %d lost, kernel counted %d", reported, tr.LostEvents())
	}
}

// lostMarker is a capture that also does what the CLI does on a loss.
type lostMarker struct{ *capture }

func (l lostMarker) Lost(n uint64) {
	l.mu.Lock()
	l.lost += n
	l.corr.MarkLost()
	l.mu.Unlock()
	l.wake()
}

// refuse replaces a program with one every verifier refuses: it reads a
// register nothing wrote.
func refuse(names ...string) func(*ebpf.CollectionSpec) {
	return func(spec *ebpf.CollectionSpec) {
		for _, name := range names {
			spec.Programs[name].Instructions = asm.Instructions{
				asm.Mov.Reg(asm.R0, asm.R5),
				asm.Return(),
			}
		}
	}
}

// Verifiers tighten from one kernel to the next: this machine's 6.18.44
// began to refuse a pointer walk of the iter/task_file program, and every
// load failed. A refused optional program must not stop tracing: tcptrace
// goes on without it and says what it lacks.
func TestOptionalProgramsRefused(t *testing.T) {
	defer tracer.SetSpecHook(refuse(tracer.ProgDumpOwners, tracer.ProgDumpTCP))()
	ns := netnstest.New(t)
	ln, port := listen(t, ns, "127.0.0.1:0")
	c := trace(t, ns, tracer.Config{})

	refused := c.tr.Kernel().Refused
	t.Logf("refused: %q", refused)
	if len(refused) != 2 || !strings.HasPrefix(refused[0]+refused[1], "iter/") {
		t.Errorf("refused = %q, want iter/task_file and iter/tcp", refused)
	}
	for _, r := range refused {
		if !strings.Contains(r, "verifier refused") || !slices.Contains(c.tr.Kernel().Degraded, r) {
			t.Errorf("refused %q: not said as refused by the verifier, or not among the degraded features", r)
		}
	}
	// Without iter/tcp, scans say why they can't run.
	if err := c.tr.Scan(timeline.New(timeline.DefaultConfig(), func(*timeline.Connection) {}), 0); err == nil ||
		!strings.Contains(err.Error(), "iter/tcp") {
		t.Errorf("Scan without iter/tcp: %v, want an error naming it", err)
	}
	// Tracing itself works. A half-close, so that no socket is orphaned:
	// the capture would scan to follow it, and scans are off.
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	if err := cli.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(srv); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := io.ReadAll(cli); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	mustOutcome(t, c.record("client", client(port)), timeline.OutcomeClosed, timeline.ClosedByLocal)
	if r := c.record("server", server(port)); r.Outcome != timeline.OutcomeClosed {
		t.Errorf("server outcome %s, want closed", r.Outcome)
	}
}

// A required program refused is an error that says so.
func TestRequiredProgramRefused(t *testing.T) {
	defer tracer.SetSpecHook(refuse(tracer.ProgSetState))()
	tr, err := tracer.New(tracer.Config{})
	if err == nil {
		tr.Close()
		t.Fatal("New succeeded without inet_sock_set_state's program")
	}
	if !strings.Contains(err.Error(), "verifier rejected a tcptrace program") || !strings.Contains(err.Error(), tracer.ProgSetState) {
		t.Errorf("error %q does not say which program the verifier rejected", err)
	}
}

// Connections at rest are packed (timeline's rest.go) and unpacked by their
// next event: on the real kernel, both ends of an idle connection are packed,
// and their records, once they close, are whole. Events one by one (as with
// --events): queued per socket, an idle connection's events stay in the
// kernel until it closes, and the loader holds nothing to pack.
func TestIdleConnectionsPacked(t *testing.T) {
	ns := netnstest.New(t)
	ln, port := listen(t, ns, "127.0.0.1:0")
	ccfg := timeline.DefaultConfig()
	ccfg.PackAfter = int64(50 * time.Millisecond)
	c := traceWith(t, ns, tracer.Config{SendAtOnce: true}, ccfg, false)
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)

	deadline := time.Now().Add(waitTimeout)
	for {
		c.mu.Lock()
		packed := c.corr.Packed()
		c.mu.Unlock()
		if packed == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections packed after %v, want client and server", packed, waitTimeout)
		}
		select {
		case <-c.notify:
		case <-time.After(time.Second): // Tick notifies every PollInterval
		}
	}
	cli.Close()
	srv.Close()
	cr := c.record("client", client(port))
	mustOutcome(t, cr, timeline.OutcomeClosed, timeline.ClosedByLocal)
	if cr.Handshake <= 0 || cr.PID != uint32(os.Getpid()) || cr.States[0] != timeline.StateSynSent ||
		cr.Steps[0].To != timeline.StateSynSent || cr.Steps[1].To != timeline.StateEstablished {
		t.Errorf("client record not whole after packing:\n%s", describe(cr))
	}
	sr := c.record("server", server(port))
	if sr.Outcome != timeline.OutcomeClosed || sr.LastState() != timeline.StateClose ||
		!slices.Contains(sr.States, timeline.StateEstablished) {
		t.Errorf("server record not whole after packing:\n%s", describe(sr))
	}
}
