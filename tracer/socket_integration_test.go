package tracer_test

// What the socket knew, on the real kernel: sequence numbers checked
// against tcpdump -S of the same connection, the time a full receive
// window held a sender, retransmissions by kind, tcp_info at close.

import (
	"fmt"
	"io"
	"net"
	"regexp"
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

// segment is one tcpdump -S line: who sent it, its flags, its sequence
// range (end is one past its data, or start when it has none) and ack.
type segment struct {
	src, dst   string
	flags      string
	start, end uint32
	ack        uint32
}

var tcpdumpLine = regexp.MustCompile(`IP6? (\S+) > (\S+): Flags \[([^\]]*)\](?:, seq (\d+)(?::(\d+))?)?(?:, ack (\d+))?`)

func parseSegments(lines []string) []segment {
	var out []segment
	for _, l := range lines {
		m := tcpdumpLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := segment{src: m[1], dst: strings.TrimSuffix(m[2], ":"), flags: m[3]}
		if m[4] != "" {
			v, _ := strconv.ParseUint(m[4], 10, 32)
			s.start, s.end = uint32(v), uint32(v)
		}
		if m[5] != "" {
			v, _ := strconv.ParseUint(m[5], 10, 32)
			s.end = uint32(v)
		}
		if m[6] != "" {
			v, _ := strconv.ParseUint(m[6], 10, 32)
			s.ack = uint32(v)
		}
		out = append(out, s)
	}
	return out
}

// wireSeq finds, on the wire, the ISN and FIN sequence number sent by the
// end at addr (tcpdump's "1.2.3.4.PORT").
func wireSeq(t *testing.T, segs []segment, from string) (isn, fin uint32) {
	t.Helper()
	var haveISN, haveFIN bool
	for _, s := range segs {
		if s.src != from {
			continue
		}
		if strings.Contains(s.flags, "S") && !haveISN {
			isn, haveISN = s.start, true
		}
		if strings.Contains(s.flags, "F") && !haveFIN {
			fin, haveFIN = s.end, true // a FIN after data: one past the data
		}
	}
	if !haveISN || !haveFIN {
		t.Fatalf("tcpdump shows no SYN or no FIN from %s:\n%+v", from, segs)
	}
	return isn, fin
}

func dotted(a net.Addr) string {
	ta := a.(*net.TCPAddr)
	return ta.IP.String() + "." + strconv.Itoa(ta.Port)
}

// checkSeqAgainstWire runs a connection with data both ways, the client
// closing first, and compares both records' sequence numbers with tcpdump.
func checkSeqAgainstWire(t *testing.T, c *capture, ns *netnstest.NS, wireNS *netnstest.NS, iface, listenAddr, dialAddr string) {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", listenAddr) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	wire := wireNS.Tcpdump(t, iface, fmt.Sprintf("tcp port %d", port))
	var cli net.Conn
	dialNS := ns
	if wireNS != ns {
		dialNS = wireNS
	}
	dialNS.Do(func() { cli, err = net.Dial("tcp", strings.Replace(dialAddr, ":0", ":"+strconv.Itoa(port), 1)) })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cli.Write([]byte("hello"))
	buf := make([]byte, 5)
	io.ReadFull(srv, buf)
	srv.Write([]byte("world!"))
	io.ReadFull(cli, make([]byte, 6)) // all of it: unread data would close with RST
	cliAddr, srvAddr := dotted(cli.LocalAddr()), dotted(srv.LocalAddr())
	cli.Close()
	io.Copy(io.Discard, srv)
	srv.Close()
	cr := c.record("client", func(r *timeline.Connection) bool {
		return r.RPort == uint16(port) && r.Role == timeline.RoleClient
	})
	var sr *timeline.Connection
	if wireNS == ns {
		sr = c.record("server", server(uint16(port)))
	}
	segs := parseSegments(wire.Stop(t))
	cISN, cFIN := wireSeq(t, segs, cliAddr)
	sISN, sFIN := wireSeq(t, segs, srvAddr)
	check := func(who string, r *timeline.Connection, isn, peerISN, fin, peerFIN uint32) {
		got := r.Seq
		if !got.HasISN || got.ISN != isn || got.PeerISN != peerISN {
			t.Errorf("%s ISNs %d/%d (known %v), wire %d/%d", who, got.ISN, got.PeerISN, got.HasISN, isn, peerISN)
		}
		if !got.HasFIN || !got.HasPeerFIN || got.FIN != fin || got.PeerFIN != peerFIN {
			t.Errorf("%s FINs %d/%d (known %v/%v), wire %d/%d", who, got.FIN, got.PeerFIN, got.HasFIN, got.HasPeerFIN, fin, peerFIN)
		}
	}
	check("client", cr, cISN, sISN, cFIN, sFIN)
	if sr != nil {
		check("server", sr, sISN, cISN, sFIN, cFIN)
	}
}

func TestSequenceNumbersMatchTheWire(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	checkSeqAgainstWire(t, c, ns, ns, "lo", "127.0.0.1:0", "127.0.0.1:0")
}

func TestSequenceNumbersMatchTheWireAcrossVeth(t *testing.T) {
	// The server's end is traced in its namespace; the client dials from
	// its own, across a veth pair, where tcpdump watches.
	srvNS, cliNS := netnstest.New(t), netnstest.New(t)
	srvNS.Veth(t, cliNS, "10.98.0.1/24", "10.98.0.2/24")
	c := trace(t, cliNS, tracer.Config{})
	checkSeqAgainstWire(t, c, srvNS, cliNS, "veth1", "10.98.0.1:0", "10.98.0.1:0")
}

func TestStalledOnAFullWindow(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	// A small receive buffer, set before connect() so the window is
	// small from the start: the server's 2 MB cannot all fit.
	cli := dialSmallWindow(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	sent := make(chan error, 1)
	go func() {
		_, err := srv.Write(make([]byte, 2<<20))
		srv.Close()
		sent <- err
	}()
	// The client application stops reading for 3 s: the scenario itself
	// (a wall-clock stall to measure), not a wait for the tracer.
	for stall := time.Now(); time.Since(stall) < 3*time.Second; {
		c.drained()
	}
	if _, err := io.Copy(io.Discard, cli); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	cli.Close()
	r := c.record("server", server(port))
	// Counted in jiffies: up to a tick (10 ms at HZ=100) off the record's times.
	if r.Info.RwndLimited < 2e9 || r.Info.RwndLimited > r.Duration()+20e6 {
		t.Errorf("rwnd-limited %s of %s, want about 3 s", time.Duration(r.Info.RwndLimited), time.Duration(r.Duration()))
	}
	if e := r.Explanation(); !strings.Contains(e, "the peer's receive window was full for") ||
		!strings.Contains(e, "the peer application stopped reading") {
		t.Errorf("explanation: %s", e)
	}
}

func TestRetransmissionTimeouts(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	// Every data segment to the server dies until a retransmission was
	// sent twice: timeouts, backed off.
	undo := ns.Nft(t, "drop_all_data", fmt.Sprintf("\t\ttcp dport %d tcp flags & (syn | fin | rst) == 0 meta length > 100 drop", port))
	if _, err := cli.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	c.sockets("two timeouts", func(ss []timeline.Socket) bool {
		for _, s := range ss {
			if s.RPort == port && s.TotalRetrans >= 2 {
				return true
			}
		}
		return false
	})
	undo()
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(srv, buf); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	readEOF(t, srv)
	srv.Close()
	r := c.record("client", client(port))
	if r.RetransByKind[timeline.RetransRTO] < 2 || r.MaxBackoff < 2 {
		t.Errorf("retransmissions by kind %v, backoff %d; want 2 timeouts or more", r.RetransByKind, r.MaxBackoff)
	}
	if e := r.Explanation(); !strings.Contains(e, "timeouts (the peer or the path went silent") {
		t.Errorf("explanation: %s", e)
	}
	if !r.Info.End || r.Info.Cwnd == 0 || r.Info.MinRTT == 0 || r.Info.Delivered == 0 || r.Info.SndMSS == 0 {
		t.Errorf("tcp_info at close: %+v", r.Info)
	}
}

func TestFastRetransmits(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	// One data segment in 30 dies on a path that delivers the rest: the
	// duplicate ACKs/SACKs trigger fast retransmits.
	undo := ns.Nft(t, "drop_some_data", fmt.Sprintf("\t\ttcp dport %d tcp flags & (syn | fin | rst) == 0 meta length > 100 numgen inc mod 30 == 0 drop", port))
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, srv)
		done <- err
	}()
	// 16 MiB in writes that keep the send buffer full: a dropped segment
	// always has others in flight behind it, whose SACKs mark it lost (a
	// fast retransmit), rather than being the last one sent, which only a
	// tail-loss probe recovers (what an application-limited sender of
	// small writes met here now and then).
	chunk := make([]byte, 64<<10)
	for i := 0; i < 256; i++ {
		if _, err := cli.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	cli.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	undo()
	srv.Close()
	r := c.record("client", client(port))
	if r.RetransByKind[timeline.RetransFast] == 0 {
		t.Errorf("retransmissions by kind %v (rto, fast, tlp at 1, 2, 3): no fast retransmit", r.RetransByKind)
	}
	if e := r.Explanation(); !strings.Contains(e, "fast retransmit") {
		t.Errorf("explanation: %s", e)
	}
}

func TestUserTimeoutNamedNotRetries2(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	defer srv.Close()
	raw, err := cli.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1500) })
	if err != nil {
		t.Fatal(err)
	}
	// Nothing the client sends arrives: TCP_USER_TIMEOUT ends it, long
	// before tcp_retries2 would.
	ns.Nft(t, "drop_all_data", fmt.Sprintf("\t\ttcp dport %d tcp flags & (syn | fin | rst) == 0 meta length > 100 drop", port))
	if _, err := cli.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	r := c.record("client", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleClient && r.RPort == port && r.Outcome == timeline.OutcomeTimeout
	})
	if r.UserTimeout != 1500 || !strings.Contains(r.Explanation(), "TCP_USER_TIMEOUT=1500 ms on the socket expired") ||
		strings.Contains(r.Explanation(), "tcp_retries2") {
		t.Errorf("user timeout %d: %s", r.UserTimeout, r.Explanation())
	}
	cli.Close()
}

func TestZeroWindowAlert(t *testing.T) {
	ns := netnstest.New(t)
	ccfg := timeline.DefaultConfig()
	ccfg.StuckAfter = 2e9
	c := traceWith(t, ns, tracer.Config{}, ccfg, false)
	ln, port := listen(t, ns, "127.0.0.1:0")
	defer ln.Close()
	cli := dialSmallWindow(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	sent := make(chan error, 1)
	go func() {
		_, err := srv.Write(make([]byte, 4<<20))
		sent <- err
	}()
	// The client reads nothing until the server's end is alerted on.
	a := c.alert("zero window", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertZeroWindow && a.LPort == port && a.Ended == ""
	})
	if a.For() < 2e9 {
		t.Errorf("alerted after %s held, want StuckAfter (2 s) or more", time.Duration(a.For()))
	}
	if e := string(timeline.AppendAlertExplanation(nil, &a)); !strings.Contains(e, "the peer's receive window is full") {
		t.Errorf("alert says %q", e)
	}
	if _, err := io.CopyN(io.Discard, cli, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	c.alert("window opened", func(a *timeline.Alert) bool {
		return a.Kind == timeline.AlertZeroWindow && a.LPort == port && a.Ended == "window_opened"
	})
	cli.Close()
	srv.Close()
}

// dialSmallWindow connects with a 64 KiB receive buffer, set before
// connect() so that the window is small from the start: a sender fills it.
func dialSmallWindow(t *testing.T, ns *netnstest.NS, addr string) net.Conn {
	t.Helper()
	var cli net.Conn
	var err error
	ns.Do(func() {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10) })
		}}
		cli, err = d.Dial("tcp", addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}
