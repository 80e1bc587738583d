package output

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/linecheck"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The ladder goldens are rendered from records the correlator built out of
// event sequences as the kernel reports them (see the shared kernel notes:
// transitions, flags and RST reasons per scenario), not from hand-made
// records.

// end is one socket's events: its 4-tuple as it sees it, and its owner.
type end struct {
	cookie       uint64
	laddr, raddr netip.Addr
	lport, rport uint16
	pid          uint32
	comm         string
}

var (
	cliHost = netip.MustParseAddr("10.0.0.1")
	srvHost = netip.MustParseAddr("10.0.0.2")
	loAddr  = netip.MustParseAddr("127.0.0.1")
)

func (e end) ev(ms float64, typ timeline.EventType, st timeline.State, opts ...func(*timeline.Event)) timeline.Event {
	ev := timeline.Event{Time: t0 + int64(ms*1e6), Cookie: e.cookie, Type: typ, NewState: st,
		LAddr: e.laddr, RAddr: e.raddr, LPort: e.lport, RPort: e.rport, NetNS: 4026531840,
		PID: e.pid, Comm: e.comm, UID: 1000}
	for _, o := range opts {
		o(&ev)
	}
	return ev
}

func (e end) st(ms float64, from, to timeline.State, opts ...func(*timeline.Event)) timeline.Event {
	ev := e.ev(ms, timeline.EventState, to, opts...)
	ev.OldState = from
	return ev
}

// The other end of a connection on this host.
func (e end) mirror(cookie uint64, pid uint32, comm string) end {
	return end{cookie: cookie, laddr: e.raddr, raddr: e.laddr, lport: e.rport, rport: e.lport, pid: pid, comm: comm}
}

var (
	dead     = func(e *timeline.Event) { e.SockDead = true }
	done     = func(e *timeline.Event) { e.SockDone = true }
	deadDone = func(e *timeline.Event) { e.SockDead, e.SockDone = true, true }
)

func errno(n syscall.Errno) func(*timeline.Event) {
	return func(e *timeline.Event) { e.Errno = uint16(n) }
}

func reason(r string) func(*timeline.Event) { return func(e *timeline.Event) { e.RSTReason = r } }

// figures are struct tcp_sock's counters at a state change: bytes_acked
// and bytes_received count the SYN and FIN as one byte each.
func figures(acked, received uint64, srttUs uint32) func(*timeline.Event) {
	return func(e *timeline.Event) { e.BytesAcked, e.BytesReceived, e.SRTT = acked, received, srttUs }
}

var linuxSysctls = timeline.Sysctls{NetNS: 4026531840, SynRetries: 6, SynAckRetries: 5, SynLinearTimeouts: 4, FinTimeout: 60}

// correlate feeds events to a correlator and returns its records by cookie.
func correlate(t *testing.T, sys timeline.Sysctls, events ...timeline.Event) map[uint64]*timeline.Connection {
	t.Helper()
	recs := map[uint64]*timeline.Connection{}
	c := timeline.New(timeline.DefaultConfig(), func(conn *timeline.Connection) { recs[conn.Cookie] = conn.Clone() })
	c.SetSysctls(sys)
	for i := range events {
		c.Add(&events[i])
	}
	c.Flush()
	return recs
}

// client is curl on 10.0.0.1 talking to a web server on 10.0.0.2, 12 ms away.
var client = end{cookie: 1, laddr: cliHost, raddr: srvHost, lport: 51234, rport: 80, pid: 4242, comm: "curl"}

// server is nginx's accepted socket of the same connection.
var server = client.mirror(2, 812, "nginx")

// Loopback, where both ends are on this host.
var loClient = end{cookie: 11, laddr: loAddr, raddr: loAddr, lport: 41230, rport: 8080, pid: 4242, comm: "curl"}
var loServer = loClient.mirror(12, 812, "nginx")

// The longest addresses there are.
var v6 = end{cookie: 21, laddr: netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:1"),
	raddr: netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:2"), lport: 65535, rport: 65534, pid: 4194304,
	comm: "very-long-name1"}

const (
	closeState  = timeline.StateClose
	synSent     = timeline.StateSynSent
	synRecv     = timeline.StateSynRecv
	established = timeline.StateEstablished
	finWait1    = timeline.StateFinWait1
	finWait2    = timeline.StateFinWait2
	closeWait   = timeline.StateCloseWait
	lastAck     = timeline.StateLastAck
	closing     = timeline.StateClosing
	listen      = timeline.StateListen
)

type ladderCase struct {
	name   string
	sys    timeline.Sysctls
	events []timeline.Event
	local  uint64 // the record drawn
	peer   uint64 // its peer's record, 0: none
	ascii  bool
	absSeq bool // --absolute-seq
}

func clientHandshake(e end) []timeline.Event {
	return []timeline.Event{
		e.st(0, closeState, synSent),
		e.st(24.1, synSent, established, figures(1, 0, 24100)),
	}
}

func ladderCases() []ladderCase {
	cat := func(parts ...[]timeline.Event) []timeline.Event {
		var out []timeline.Event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	c := client
	closedLocal := cat(clientHandshake(c), []timeline.Event{
		c.st(61.3, established, finWait1, figures(1+512, 4200, 20500)),
		c.st(73.4, finWait1, finWait2, figures(1+512+1, 4200, 18200)),
		c.st(73.6, finWait2, closeState, deadDone, figures(1+512+1, 4200+1, 18200)),
	})
	synTimeout := func(retries []float64, fail float64) []timeline.Event {
		evs := []timeline.Event{c.st(0, closeState, synSent)}
		for _, r := range retries {
			evs = append(evs, c.ev(r, timeline.EventRetransmit, synSent))
		}
		evs = append(evs, c.st(fail, synSent, closeState, errno(syscall.ETIMEDOUT)),
			c.ev(fail, timeline.EventError, closeState, errno(syscall.ETIMEDOUT)))
		return evs
	}
	exponential := linuxSysctls
	exponential.SynRetries, exponential.SynLinearTimeouts = 4, 0
	linear := linuxSysctls
	linear.SynRetries = 2
	orphanSys := linuxSysctls
	orphanSys.FinTimeout = 30
	lc, ls := loClient, loServer
	return append([]ladderCase{
		{name: "closed_local", sys: linuxSysctls, local: 1, events: closedLocal},
		{name: "closed_local", sys: linuxSysctls, local: 1, events: closedLocal, ascii: true},
		{name: "closed_peer", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			c.st(40.2, established, closeWait, done, figures(1+78, 1380+1, 22000)),
			c.st(40.5, closeWait, lastAck, figures(1+78, 1380+1, 22000)),
			c.st(52.7, lastAck, closeState, figures(1+78+1, 1380+1, 22000)),
		})},
		{name: "simultaneous_close", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			c.st(50.0, established, finWait1, figures(1+100, 100, 24000)),
			c.st(50.9, finWait1, closing, done, figures(1+100, 100+1, 24000)),
			c.st(62.3, closing, closeState, deadDone, figures(1+100+1, 100+1, 24000)),
		})},
		{name: "half_close", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			// shutdown(SHUT_WR), then read until the server's FIN.
			c.st(30.0, established, finWait1, figures(1+2048, 0, 24000)),
			c.st(42.1, finWait1, finWait2, figures(1+2048+1, 0, 24000)),
			c.st(95.8, finWait2, closeState, done, figures(1+2048+1, 65536+1, 23000)),
		})},
		{name: "orphaned_fin_wait2", sys: orphanSys, local: 1, events: closedLocalOrphan(c)},
		{name: "refused", sys: linuxSysctls, local: 11, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.ev(0.052, timeline.EventRSTReceived, synSent),
			lc.st(0.058, synSent, closeState, errno(syscall.ECONNREFUSED)),
			lc.ev(0.061, timeline.EventError, closeState, errno(syscall.ECONNREFUSED)),
		}},
		{name: "refused", sys: linuxSysctls, local: 11, ascii: true, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.ev(0.052, timeline.EventRSTReceived, synSent),
			lc.st(0.058, synSent, closeState, errno(syscall.ECONNREFUSED)),
		}},
		{name: "syn_timeout_exponential", sys: exponential, local: 1,
			events: synTimeout([]float64{1003, 3011, 7027, 15059}, 31121)},
		{name: "syn_timeout_exponential", sys: exponential, local: 1, ascii: true,
			events: synTimeout([]float64{1003, 3011, 7027, 15059}, 31121)},
		// Linux 6.15+: tcp_syn_linear_timeouts=4 makes the first retries
		// 1 s apart; measured with tcp_syn_retries=2 (kernel notes).
		{name: "syn_timeout_linear", sys: linear, local: 1,
			events: synTimeout([]float64{1004, 2012, 3064, 4088, 5112}, 7160)},
		{name: "synack_retries", sys: linuxSysctls, local: 2, events: []timeline.Event{
			server.ev(1000, timeline.EventSynAckRetransmit, synRecv, func(e *timeline.Event) { e.Cookie = 9 }),
			server.ev(3000, timeline.EventSynAckRetransmit, synRecv, func(e *timeline.Event) { e.Cookie = 9 }),
			server.st(3012, listen, synRecv),
			server.st(3012, synRecv, established, figures(0, 0, 12000)),
			server.st(3150, established, closeWait, done, figures(1200, 310+1, 12000)),
			server.st(3151, closeWait, lastAck, figures(1200, 310+1, 12000)),
			server.st(3163, lastAck, closeState, figures(1200+1, 310+1, 12000)),
		}},
		{name: "linger_abort", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			// close() with SO_LINGER {1, 0}: CLOSE first, then the RST.
			c.st(48.0, established, closeState, figures(1+300, 900, 24000)),
			c.ev(48.01, timeline.EventRSTSent, closeState, reason("TCP_STATE")),
		})},
		{name: "unread_data", sys: linuxSysctls, local: 2, events: []timeline.Event{
			server.st(12.0, listen, synRecv),
			server.st(12.0, synRecv, established, figures(0, 0, 12000)),
			server.st(20.0, established, closeState, figures(0, 4096, 12000)),
			server.ev(20.01, timeline.EventRSTSent, closeState, reason("TCP_ABORT_ON_CLOSE")),
		}},
		{name: "reset_by_peer", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			c.ev(70.0, timeline.EventRSTReceived, established),
			c.st(70.0, established, closeState, errno(syscall.ECONNRESET), figures(1+160, 20, 24000)),
		})},
		{name: "half_open", sys: linuxSysctls, local: 11, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.st(0.04, synSent, established, figures(1, 0, 40)),
			// The peer's socket is gone: its stack answers our data with a
			// socketless RST, which we receive.
			ls.ev(5000.1, timeline.EventRSTSent, closeState, func(e *timeline.Event) {
				e.Cookie, e.NoSocket, e.PID, e.Comm = 0, true, 0, ""
			}),
			lc.ev(5000.12, timeline.EventRSTReceived, established),
			lc.st(5000.12, established, closeState, errno(syscall.ECONNRESET), figures(1, 0, 40)),
		}},
		{name: "retransmit_timeout", sys: linuxSysctls, local: 1, events: cat(clientHandshake(c), []timeline.Event{
			c.ev(300, timeline.EventRetransmit, established),
			c.ev(700, timeline.EventRetransmit, established),
			c.ev(1500, timeline.EventRetransmit, established),
			c.st(3100, established, closeState, errno(syscall.ETIMEDOUT), figures(1, 0, 24000)),
		})},
		{name: "partial", sys: linuxSysctls, local: 1, events: []timeline.Event{
			// Started before tracing: first seen when it closes.
			c.st(0, established, finWait1, figures(1+9000, 120, 24000)),
			c.st(12.3, finWait1, finWait2, dead, figures(1+9001, 120, 24000)),
			c.st(12.3, finWait2, closeState, dead, figures(1+9001, 120, 24000)),
		}},
		{name: "listener", sys: linuxSysctls, local: 3, events: []timeline.Event{
			server.st(0, closeState, listen, func(e *timeline.Event) { e.Cookie, e.RAddr, e.RPort = 3, netip.IPv6Unspecified(), 0 }),
			server.st(90000, listen, closeState, func(e *timeline.Event) { e.Cookie, e.RAddr, e.RPort = 3, netip.IPv6Unspecified(), 0 }),
		}},
		{name: "ipv6_long_addresses", sys: linuxSysctls, local: 21, events: []timeline.Event{
			v6.st(0, closeState, synSent),
			v6.ev(0.07, timeline.EventRSTReceived, synSent),
			v6.st(0.08, synSent, closeState, errno(syscall.ECONNREFUSED)),
		}},
		{name: "still_open", sys: linuxSysctls, local: 1, events: clientHandshake(c)},
		{name: "paired", sys: linuxSysctls, local: 11, peer: 12, events: pairedClose(lc, ls)},
		{name: "paired", sys: linuxSysctls, local: 11, peer: 12, events: pairedClose(lc, ls), ascii: true},
		{name: "paired_server_closes", sys: linuxSysctls, local: 12, peer: 11, events: pairedServerCloses(lc, ls)},
		// curl against python3 -m http.server, as the kernel reported it.
		{name: "shutdown_then_close_paired", sys: linuxSysctls, local: 11, peer: 12, events: shutdownThenClose(lc, ls)},
		{name: "shutdown_then_close_server", sys: linuxSysctls, local: 12, events: shutdownThenClose(lc, ls)},
		{name: "shutdown_then_close_client", sys: linuxSysctls, local: 11, events: shutdownThenClose(lc, ls)},
	}, seqCases()...)
}

// shutdownThenClose is curl against python3 -m http.server on loopback, the
// events as the kernel reported them: the server answers, calls
// shutdown(SHUT_WR) (its FIN) and then close(), which sets FIN_WAIT1
// again; curl reads to EOF and closes; the server ends in TIME_WAIT.
func shutdownThenClose(lc, ls end) []timeline.Event {
	lc.comm, ls.comm = "curl", "python3"
	return []timeline.Event{
		lc.st(0, closeState, synSent),
		lc.st(0.107, synSent, established, figures(1, 0, 30)),
		ls.st(0.118, listen, synRecv),
		ls.st(0.123, synRecv, established, figures(0, 0, 40)),
		ls.st(4.751, established, finWait1, figures(1130, 78, 40)),
		lc.st(4.755, established, closeWait, done, figures(1+78, 1130+1, 30)),
		ls.st(4.764, finWait1, finWait1, figures(1130, 78, 40)),
		lc.st(4.932, closeWait, lastAck, done, figures(1+78, 1130+1, 30)),
		ls.st(4.938, finWait1, finWait2, dead, figures(1130+1, 78, 40)),
		ls.st(4.945, finWait2, closeState, deadDone, figures(1130+1, 78+1, 40)),
		lc.st(4.960, lastAck, closeState, deadDone, figures(1+78+1, 1130+1, 30)),
	}
}

func closedLocalOrphan(c end) []timeline.Event {
	return append(clientHandshake(c),
		c.st(61.3, established, finWait1, figures(1+512, 4200, 20500)),
		// The ACK of our FIN came, the peer's FIN not yet: handed to a
		// timewait socket in FIN_WAIT2 at once (SOCK_DEAD, no SOCK_DONE).
		c.st(73.4, finWait1, finWait2, dead, figures(1+512+1, 4200, 18200)),
		c.st(73.4, finWait2, closeState, dead, figures(1+512+1, 4200, 18200)))
}

// pairedClose is the loopback sequence of the kernel notes: the client
// sends and closes first, the server reads EOF and closes.
func pairedClose(lc, ls end) []timeline.Event {
	return []timeline.Event{
		lc.st(0, closeState, synSent),
		lc.st(0.031, synSent, established, figures(1, 0, 28)),
		ls.st(0.036, listen, synRecv),
		ls.st(0.036, synRecv, established, figures(0, 0, 9)),
		lc.st(0.210, established, finWait1, figures(1+75, 512, 30)),
		ls.st(0.224, established, closeWait, done, figures(512, 75+1, 12)),
		lc.st(0.226, finWait1, finWait2, dead, figures(1+75+1, 512, 30)),
		lc.st(0.226, finWait2, closeState, dead, figures(1+75+1, 512, 30)),
		ls.st(0.391, closeWait, lastAck, figures(512, 75+1, 12)),
		ls.st(0.412, lastAck, closeState, figures(512+1, 75+1, 12)),
	}
}

// pairedServerCloses: the server sends the response and closes first (HTTP
// with Connection: close); the client reads to EOF and closes.
func pairedServerCloses(lc, ls end) []timeline.Event {
	return []timeline.Event{
		lc.st(0, closeState, synSent),
		lc.st(0.029, synSent, established, figures(1, 0, 27)),
		ls.st(0.034, listen, synRecv),
		ls.st(0.034, synRecv, established, figures(0, 0, 8)),
		ls.st(0.301, established, finWait1, figures(2300, 80, 11)),
		lc.st(0.318, established, closeWait, done, figures(1+80, 2300+1, 30)),
		ls.st(0.320, finWait1, finWait2, dead, figures(2300+1, 80, 11)),
		ls.st(0.320, finWait2, closeState, dead, figures(2300+1, 80, 11)),
		lc.st(0.515, closeWait, lastAck, figures(1+80, 2300+1, 30)),
		lc.st(0.533, lastAck, closeState, figures(1+80+1, 2300+1, 30)),
	}
}

func renderCase(t *testing.T, tc ladderCase, color bool) []byte {
	t.Helper()
	recs := correlate(t, tc.sys, tc.events...)
	local := recs[tc.local]
	if local == nil {
		t.Fatalf("no record %d among %v", tc.local, recs)
	}
	var peer *timeline.Connection
	if tc.peer != 0 {
		if peer = recs[tc.peer]; peer == nil {
			t.Fatalf("no peer record %d", tc.peer)
		}
	}
	var buf bytes.Buffer
	w := NewLadder(&buf, time.UTC, Options{}, LadderOptions{ASCII: tc.ascii, Color: color, AbsoluteSeq: tc.absSeq})
	if err := w.ConnectionPair(local, peer); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLadderGolden(t *testing.T) {
	for _, tc := range ladderCases() {
		name := tc.name
		if tc.ascii {
			name += ".ascii"
		}
		if tc.absSeq {
			name += ".abs"
		}
		t.Run(name, func(t *testing.T) {
			got := renderCase(t, tc, false)
			golden(t, filepath.Join("ladder", name+".golden"), got)
			checkLines(t, got)
			for i, line := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n") {
				for _, r := range line {
					if r < 0x20 || r == 0x7f || tc.ascii && r > 0x7e {
						t.Errorf("line %d: %q is not plain text: %q", i+1, r, line)
						break
					}
				}
			}
		})
	}
}

// checkLines checks what every text and ladder output must be
// (internal/linecheck): no line wider than 80 columns, no raw X → X, no
// diagram row that says nothing, no note running into the lines.
func checkLines(t *testing.T, out []byte) {
	t.Helper()
	for _, p := range linecheck.Problems(string(out)) {
		t.Error(p)
	}
}

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Colours change nothing but colours: without the escapes the text is the
// same, so the layout stays within 80 columns.
func TestLadderColorOnlyAddsEscapes(t *testing.T) {
	for _, tc := range ladderCases() {
		plain, colored := renderCase(t, tc, false), renderCase(t, tc, true)
		if bytes.Equal(plain, colored) && tc.name != "listener" { // a listener has no diagram
			t.Errorf("%s: no colour", tc.name)
		}
		if got := sgr.ReplaceAll(colored, nil); !bytes.Equal(got, plain) {
			t.Errorf("%s: coloured text differs beyond the escapes:\n%s\nplain:\n%s", tc.name, got, plain)
		}
	}
}

// The honesty rule: a segment a tracepoint reported is drawn solid, one
// inferred from a state change dashed.
func TestLadderSolidOnlyForSeenSegments(t *testing.T) {
	recs := correlate(t, linuxSysctls, ladderCases()[0].events...)
	rows := ladderRows(recs[1], nil, false)
	for _, r := range rows {
		if r.arrow.kind != 0 && r.arrow.seen {
			t.Errorf("graceful close: %q drawn as seen, but no tracepoint reports it", r.arrow.label)
		}
	}
	recs = correlate(t, linuxSysctls, client.st(0, closeState, synSent),
		client.ev(1000, timeline.EventRetransmit, synSent),
		client.ev(1010, timeline.EventRSTReceived, synSent),
		client.st(1010, synSent, closeState, errno(syscall.ECONNREFUSED)))
	var seen []string
	for _, r := range ladderRows(recs[1], nil, false) {
		if r.arrow.seen {
			seen = append(seen, r.arrow.label)
		}
	}
	if strings.Join(seen, ",") != "SYN (retry 1),RST" {
		t.Errorf("solid arrows %q, want the SYN retry and the RST", seen)
	}
}

// Control bytes in a process name never reach the terminal.
func TestLadderNeutralisesComm(t *testing.T) {
	evil := client
	evil.comm = "evil\x1b[2J\x07"
	recs := correlate(t, linuxSysctls, clientHandshake(evil)...)
	var buf bytes.Buffer
	w := NewLadder(&buf, time.UTC, Options{}, LadderOptions{})
	w.ConnectionPair(recs[1], recs[1])
	w.Flush()
	if bytes.ContainsAny(buf.Bytes(), "\x1b\x07") {
		t.Errorf("control bytes reached the output:\n%q", buf.String())
	}
}

// Everything but connections is written as the text writer writes it.
func TestLadderDelegatesToText(t *testing.T) {
	var text, ladder bytes.Buffer
	tw := NewText(&text, time.UTC, Options{})
	lw := NewLadder(&ladder, time.UTC, Options{}, LadderOptions{})
	for _, w := range []Writer{tw, lw} {
		w.Lost(time.Unix(0, t0), 3, 5)
		w.Alert(&timeline.Alert{Time: t0 + 31e9, Kind: timeline.AlertCloseWait, LAddr: loAddr, RAddr: loAddr,
			LPort: 8080, RPort: 41240, PID: 812, Comm: "nginx", State: timeline.StateCloseWait, Since: t0})
		w.Event(&timeline.Event{Time: t0, Cookie: 7, Type: timeline.EventState, OldState: closeState, NewState: synSent,
			LAddr: loAddr, RAddr: loAddr, RPort: 80, PID: 1, Comm: "x"})
		w.Summary(NewSummary(timeline.Stats{Connections: 1}))
	}
	if text.String() != ladder.String() || text.Len() == 0 {
		t.Errorf("ladder:\n%s\ntext:\n%s", ladder.String(), text.String())
	}
}

// curl against python3 -m http.server: close() after shutdown() is said
// for what it is, the bytes exchanged come before the server's FIN, and
// the text timeline and closing summary fit the screen as the ladder does.
func TestShutdownThenClose(t *testing.T) {
	recs := correlate(t, linuxSysctls, shutdownThenClose(loClient, loServer)...)
	cli, srv := recs[11], recs[12]
	pair := renderCase(t, ladderCase{sys: linuxSysctls, local: 11, peer: 12, events: shutdownThenClose(loClient, loServer)}, false)
	d := string(pair)
	data, fin := strings.Index(d, "⇄"), strings.Index(d, " FIN ")
	if data < 0 || fin < 0 || data > fin {
		t.Errorf("the bytes exchanged are not drawn before the server's FIN:\n%s", d)
	}
	if !strings.Contains(d, "peer's close() after shutdown()") {
		t.Errorf("no close() after shutdown() in:\n%s", d)
	}

	var buf bytes.Buffer
	w := NewText(&buf, time.UTC, Options{})
	w.Connection(srv)
	w.Connection(cli)
	sum := NewSummary(timeline.Stats{Events: 22, Connections: 4, ResetsNoSocket: 1,
		ByReason: map[string]uint64{"closed_local": 1, "closed_peer": 1, "listener_closed": 1, "nothing_listening": 1}})
	sum.ByOutcome["closed"], sum.ByOutcome["refused"] = 3, 1
	sum.Duration, sum.RingRecords, sum.Paired = 4349*time.Millisecond, 9, 2
	sum.TopFailures = []timeline.EndpointCount{{Endpoint: timeline.Endpoint{Addr: loAddr, Port: 8080}, Count: 1}}
	sum.TimeWaitKnown, sum.TimeWaitTotal = true, 1
	sum.TimeWaitTop = []timeline.EndpointCount{{Endpoint: timeline.Endpoint{Addr: loAddr, Port: 8080, Local: true}, Count: 1}}
	w.Summary(sum)
	golden(t, "text_shutdown_then_close.golden", buf.Bytes())
	checkLines(t, buf.Bytes())
	out := buf.String()
	for _, want := range []string{
		"close() after shutdown(): FIN already sent     FIN_WAIT1",
		"--- TIME_WAIT now: 1, at local 127.0.0.1:8080=1\n",
		"ring-buffer records 9,\n    RSTs to closed ports 1, paired 2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
