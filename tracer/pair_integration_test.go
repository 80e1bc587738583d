package tracer_test

// Integration tests of what needs both ends on this host or the whole
// start-up scan: pairing the two records of a connection (loopback in one
// namespace, a veth pair between two), the roles of connections older than
// tracing, and the end of a SYN_RECV alert once the kernel drops the
// request socket.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// pairCapture is a capture whose records go through the pairing stage, as
// the CLI's do; each record comes out with its peer's cookie and owner.
type pairCapture struct {
	*capture
	pairs *timeline.Pairer
}

func (p pairCapture) Tick(now time.Time) {
	p.mu.Lock()
	p.pairs.Advance(now.UnixNano())
	p.mu.Unlock()
	p.capture.Tick(now)
}

// tracePairs traces the namespace with inode filter (0: every namespace;
// scans see ns's) through a pairing stage.
func tracePairs(t *testing.T, ns *netnstest.NS, filter uint32) *capture {
	t.Helper()
	tr, err := tracer.New(tracer.Config{NetNS: filter, NetNSPath: ns.Path, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("tracer.New: %v", err)
	}
	c := &capture{t: t, tr: tr, notify: make(chan struct{}, 1), lw: tracer.NewListenWatch()}
	sys := tr.Sysctls()
	ccfg := timeline.DefaultConfig()
	ccfg.ScansNetNS = tr.ScansNetNS
	// The pairing stage's output runs with c.mu held, like emit.
	pairs := timeline.NewPairer(timeline.DefaultPairConfig(), func(a, b *timeline.Connection) {
		c.recs = append(c.recs, a.Clone())
		if b != nil {
			c.recs = append(c.recs, b.Clone())
		}
	})
	c.corr = timeline.New(ccfg, pairs.Add)
	c.corr.OnAlert(func(a *timeline.Alert) { c.alerts = append(c.alerts, *a) })
	c.corr.SetSysctls(sys)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, pairCapture{c, pairs}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		// Unfiltered, the tracer also sees the host's traffic (other tests
		// run at the same time), which may fill the ring buffer: only the
		// filtered tracer must lose nothing.
		if c.lost > 0 && filter != 0 {
			t.Errorf("%d events lost", c.lost)
		}
	})
	return c
}

func mustPaired(t *testing.T, a, b *timeline.Connection) {
	t.Helper()
	if a.PeerCookie != b.Cookie || b.PeerCookie != a.Cookie {
		t.Errorf("not paired: %s (cookie %d, peer %d) and %s (cookie %d, peer %d)",
			describe(a), a.Cookie, a.PeerCookie, describe(b), b.Cookie, b.PeerCookie)
	}
	if a.PeerPID != b.PID || a.PeerComm != b.Comm || b.PeerPID != a.PID || b.PeerComm != a.Comm {
		t.Errorf("peer owners: %d/%q has %d/%q; %d/%q has %d/%q", a.PID, a.Comm, a.PeerPID, a.PeerComm,
			b.PID, b.Comm, b.PeerPID, b.PeerComm)
	}
}

// A client and a server on loopback, in one namespace: their two records
// name each other.
func TestPairedLoopback(t *testing.T) {
	ns := netnstest.New(t)
	c := tracePairs(t, ns, ns.Inode)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	cli.Write([]byte("hello"))
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	cr := c.record("client", client(port))
	sr := c.record("server", server(port))
	mustPaired(t, cr, sr)
	if cr.PeerComm != "tracer.test" || cr.NetNS != sr.NetNS {
		t.Errorf("client's peer %q, namespaces %d and %d", cr.PeerComm, cr.NetNS, sr.NetNS)
	}
}

// A client in one namespace, its server in another, joined by a veth pair
// (like two containers): the same 4-tuple, seen from two namespaces.
func TestPairedAcrossNamespaces(t *testing.T) {
	cliNS, srvNS := netnstest.New(t), netnstest.New(t)
	cliNS.Veth(t, srvNS, "10.200.0.1/24", "10.200.0.2/24")
	// One tracer for both namespaces: unfiltered, records picked by inode.
	c := tracePairs(t, cliNS, 0)
	ln, port := listen(t, srvNS, "10.200.0.2:0")
	cli := dial(t, cliNS, ln.Addr().String())
	srv := accept(t, ln)
	srv.Close()
	readEOF(t, cli)
	cli.Close()
	cr := c.record("client in the first namespace", func(r *timeline.Connection) bool {
		return r.NetNS == cliNS.Inode && r.Role == timeline.RoleClient && r.RPort == port
	})
	sr := c.record("server in the second namespace", func(r *timeline.Connection) bool {
		return r.NetNS == srvNS.Inode && r.Role == timeline.RoleServer && r.LPort == port
	})
	mustPaired(t, cr, sr)
	if cr.LAddr.String() != "10.200.0.1" || sr.LAddr.String() != "10.200.0.2" {
		t.Errorf("addresses: client %s, server %s", cr.LAddr, sr.LAddr)
	}
}

// Connections made before tracing starts: the start-up scan finds both
// ends and the listener, and their roles are worked out (role_inferred).
func TestPreExistingRolesInferred(t *testing.T) {
	ns := netnstest.New(t)
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	c := traceWith(t, ns, tracer.Config{}, timeline.DefaultConfig(), true)
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	cr := c.record("pre-existing client", client(port))
	sr := c.record("pre-existing server", server(port))
	for _, r := range []*timeline.Connection{cr, sr} {
		if !r.Partial || !r.RoleInferred || r.Outcome != timeline.OutcomeClosed {
			t.Errorf("record %s inferred %v", describe(r), r.RoleInferred)
		}
	}
	if cr.LPort == port || sr.LPort != port {
		t.Errorf("client %s, server %s", describe(cr), describe(sr))
	}
}

// The client's final ACK is dropped and tcp_synack_retries is 2: the
// server retransmits its SYN+ACK twice (1 s and 3 s after the first) and
// the kernel drops the request socket about 7 s after the first. The
// syn_recv alerts come while it lives, then one says it ended, then none.
func TestSynRecvAlertEnds(t *testing.T) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/tcp_synack_retries", "2")
	c := traceWith(t, ns, tracer.Config{}, stuckAfter(2*time.Second), false)
	ln, port := listen(t, ns, "127.0.0.1:0")
	ns.Nft(t, "drop_acks", fmt.Sprintf("\t\ttcp dport %d tcp flags == ack drop", port))
	cli := dial(t, ns, ln.Addr().String()) // the client is ESTABLISHED at once
	defer cli.Close()

	mine := func(a *timeline.Alert) bool { return a.Kind == timeline.AlertSynRecv && a.LPort == port }
	ended := c.alert("syn_recv ended", func(a *timeline.Alert) bool { return mine(a) && a.Ended != "" })
	if ended.Ended != "dropped" || ended.Retries != 2 {
		t.Errorf("ended alert %+v", ended)
	}
	// The request lived about 6 s after the first retry; scans miss it
	// twice before it is called gone.
	if d := time.Duration(ended.For()); d < 5*time.Second || d > 9*time.Second {
		t.Errorf("ended %s after the first SYN+ACK retry, want about 6 s", d)
	}
	// Nothing more for this handshake, two --stuck-after periods on.
	c.tickedPast(time.Unix(0, ended.Time).Add(5 * time.Second))
	c.mu.Lock()
	defer c.mu.Unlock()
	var live, ends int
	for _, a := range c.alerts {
		switch {
		case !mine(&a):
		case a.Ended != "":
			ends++
		case a.Time > ended.Time:
			t.Errorf("syn_recv alert after the end: %+v", a)
		default:
			live++
		}
	}
	if live < 1 || ends != 1 {
		t.Errorf("%d syn_recv alerts while the request lived (want at least 1), %d ended (want 1)", live, ends)
	}
}

// tickedPast waits until the tracer has ticked at or after at.
func (c *capture) tickedPast(at time.Time) {
	c.t.Helper()
	deadline := time.NewTimer(time.Until(at) + waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		now := c.now
		c.mu.Unlock()
		if !now.Before(at) {
			return
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.t.Fatalf("the tracer did not tick past %s", at.Format(time.RFC3339Nano))
		}
	}
}
