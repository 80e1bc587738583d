package timeline

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"
)

// Event sequences as the kernel reports them (see shared kernel notes),
// fed to the correlator; each case checks the record that comes out.

const ms = int64(1e6)

var (
	lo       = netip.MustParseAddr("127.0.0.1")
	cliPort  = uint16(40000)
	srvPort  = uint16(8080)
	baseTime = int64(1_700_000_000) * 1e9
)

// state is a state change at t milliseconds, seen from the client's end;
// serverSide turns it around.
func state(t int64, cookie uint64, from, to State) Event {
	return Event{Time: baseTime + t*ms, Cookie: cookie, Type: EventState, OldState: from, NewState: to,
		LAddr: lo, RAddr: lo, LPort: cliPort, RPort: srvPort, NetNS: 1, PID: 42, Comm: "curl"}
}

func serverSide(e Event) Event {
	e.LPort, e.RPort = srvPort, cliPort
	e.Comm = "nginx"
	return e
}

func with(e Event, f func(*Event)) Event { f(&e); return e }

func other(t int64, cookie uint64, typ EventType, st State) Event {
	e := state(t, cookie, 0, st)
	e.Type = typ
	return e
}

func run(t *testing.T, cfg Config, events []Event, advanceTo int64) (recs []*Connection, c *Correlator) {
	t.Helper()
	c = New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	for i := range events {
		c.Add(&events[i])
	}
	if advanceTo >= 0 {
		c.Advance(baseTime + advanceTo*ms)
	} else {
		c.Flush()
	}
	return recs, c
}

func only(t *testing.T, recs []*Connection) *Connection {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %+v", len(recs), recs)
	}
	return recs[0]
}

func TestOutcomes(t *testing.T) {
	dead := func(e *Event) { e.SockDead = true }
	deadDone := func(e *Event) { e.SockDead, e.SockDone = true, true }
	done := func(e *Event) { e.SockDone = true }
	errno := func(n syscall.Errno) func(*Event) { return func(e *Event) { e.Errno = uint16(n) } }
	handshake := []Event{state(0, 1, StateClose, StateSynSent), state(1, 1, StateSynSent, StateEstablished)}

	cases := []struct {
		name      string
		events    []Event
		outcome   Outcome
		by        Closer
		states    []State
		role      Role
		timewait  State // the state handed to a timewait socket, if any
		synRetry  int
		rstSent   bool
		rstRecv   bool
		reason    string
		handshake int64
		why       string // the expected Reason
	}{
		{
			name: "client closes first, orphaned in FIN_WAIT2",
			why:  ReasonClosedLocalOrphan,
			events: append(slices.Clone(handshake),
				state(5, 1, StateEstablished, StateFinWait1),
				with(state(6, 1, StateFinWait1, StateFinWait2), dead),
				with(state(6, 1, StateFinWait2, StateClose), dead)),
			outcome: OutcomeClosed, by: ClosedByLocal, role: RoleClient, handshake: 1 * ms,
			states:   []State{StateSynSent, StateEstablished, StateFinWait1, StateFinWait2},
			timewait: StateFinWait2,
		},
		{
			name: "half-close: peer FIN processed, real TIME_WAIT",
			why:  ReasonHalfClose,
			events: append(slices.Clone(handshake),
				state(5, 1, StateEstablished, StateFinWait1),
				state(6, 1, StateFinWait1, StateFinWait2),
				with(state(9, 1, StateFinWait2, StateClose), done)),
			outcome: OutcomeClosed, by: ClosedByLocal, role: RoleClient, handshake: 1 * ms,
			states:   []State{StateSynSent, StateEstablished, StateFinWait1, StateFinWait2, StateTimeWait},
			timewait: StateTimeWait,
		},
		{
			name: "peer closes first",
			why:  ReasonClosedPeer,
			events: append(slices.Clone(handshake),
				with(state(5, 1, StateEstablished, StateCloseWait), done),
				state(7, 1, StateCloseWait, StateLastAck),
				state(8, 1, StateLastAck, StateClose)),
			outcome: OutcomeClosed, by: ClosedByPeer, role: RoleClient, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateCloseWait, StateLastAck, StateClose},
		},
		{
			name: "simultaneous close",
			why:  ReasonSimultaneous,
			events: append(slices.Clone(handshake),
				state(5, 1, StateEstablished, StateFinWait1),
				with(state(5, 1, StateFinWait1, StateClosing), done),
				with(state(6, 1, StateClosing, StateClose), deadDone)),
			outcome: OutcomeClosed, by: ClosedByBoth, role: RoleClient, handshake: 1 * ms,
			states:   []State{StateSynSent, StateEstablished, StateFinWait1, StateClosing, StateTimeWait},
			timewait: StateTimeWait,
		},
		{
			name: "refused",
			why:  ReasonNothingListening,
			events: []Event{
				state(0, 1, StateClose, StateSynSent),
				other(1, 1, EventRSTReceived, StateSynSent),
				with(state(1, 1, StateSynSent, StateClose), errno(syscall.ECONNREFUSED)),
				with(other(1, 1, EventError, StateClose), errno(syscall.ECONNREFUSED)),
			},
			outcome: OutcomeRefused, role: RoleClient, rstRecv: true, handshake: -1,
			states: []State{StateSynSent, StateClose},
		},
		{
			name: "SYN timeout",
			why:  ReasonSynTimeout,
			events: []Event{
				state(0, 1, StateClose, StateSynSent),
				other(1000, 1, EventRetransmit, StateSynSent),
				other(3000, 1, EventRetransmit, StateSynSent),
				with(state(7000, 1, StateSynSent, StateClose), errno(syscall.ETIMEDOUT)),
			},
			outcome: OutcomeTimeout, role: RoleClient, synRetry: 2, handshake: -1,
			states: []State{StateSynSent, StateClose},
		},
		{
			name: "closed before the handshake completed",
			why:  ReasonHandshakeAbandon,
			events: []Event{
				state(0, 1, StateClose, StateSynSent),
				state(3, 1, StateSynSent, StateClose),
			},
			outcome: OutcomeAborted, role: RoleClient, handshake: -1,
			states: []State{StateSynSent, StateClose},
		},
		{
			name: "reset by peer",
			why:  ReasonPeerReset,
			events: append(slices.Clone(handshake),
				other(5, 1, EventRSTReceived, StateEstablished),
				with(state(5, 1, StateEstablished, StateClose), errno(syscall.ECONNRESET))),
			outcome: OutcomeResetByPeer, role: RoleClient, rstRecv: true, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "SO_LINGER 0: the RST trails the CLOSE transition",
			why:  ReasonLingerAbort,
			events: append(slices.Clone(handshake),
				state(5, 1, StateEstablished, StateClose),
				with(other(5, 1, EventRSTSent, StateClose), func(e *Event) { e.RSTReason = "TCP_STATE" })),
			outcome: OutcomeResetLocal, role: RoleClient, rstSent: true, reason: "TCP_STATE", handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "retransmissions gave up",
			why:  ReasonRetransTimeout,
			events: append(slices.Clone(handshake),
				other(300, 1, EventRetransmit, StateEstablished),
				with(state(900, 1, StateEstablished, StateClose), errno(syscall.ETIMEDOUT))),
			outcome: OutcomeTimeout, role: RoleClient, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "accepted, server closes first",
			why:  ReasonClosedLocalOrphan,
			events: []Event{
				serverSide(state(0, 2, StateListen, StateSynRecv)),
				serverSide(state(0, 2, StateSynRecv, StateEstablished)),
				serverSide(state(4, 2, StateEstablished, StateFinWait1)),
				serverSide(with(state(5, 2, StateFinWait1, StateFinWait2), dead)),
				serverSide(with(state(5, 2, StateFinWait2, StateClose), dead)),
			},
			outcome: OutcomeClosed, by: ClosedByLocal, role: RoleServer, handshake: -1,
			states:   []State{StateSynRecv, StateEstablished, StateFinWait1, StateFinWait2},
			timewait: StateFinWait2,
		},
		{
			name: "listener",
			why:  ReasonListenerClosed,
			events: []Event{
				serverSide(state(0, 3, StateClose, StateListen)),
				serverSide(state(9, 3, StateListen, StateClose)),
			},
			outcome: OutcomeClosed, by: ClosedByLocal, role: RoleListener, handshake: -1,
			states: []State{StateListen, StateClose},
		},
		{
			name:    "still open when tracing stops",
			why:     ReasonOpen,
			events:  slices.Clone(handshake),
			outcome: OutcomeOpen, role: RoleClient, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := only(t, mustFlush(run(t, DefaultConfig(), tc.events, -1)))
			if r.Outcome != tc.outcome || r.ClosedBy != tc.by || r.Role != tc.role {
				t.Errorf("got %s by %q as %s, want %s by %q as %s", r.Outcome, r.ClosedBy, r.Role, tc.outcome, tc.by, tc.role)
			}
			if !slices.Equal(r.States, tc.states) {
				t.Errorf("states %v, want %v", r.States, tc.states)
			}
			last := r.Steps[len(r.Steps)-1]
			for _, s := range r.Steps {
				if s.Kind == StepState {
					last = s
				}
			}
			if tc.timewait != 0 && (!last.TimewaitSocket || last.To != tc.timewait) {
				t.Errorf("last state step %+v, want a hand-off to a %s timewait socket", last, tc.timewait)
			}
			if tc.timewait == 0 && last.TimewaitSocket {
				t.Errorf("unexpected timewait hand-off %+v", last)
			}
			if r.SynRetries != tc.synRetry || r.RSTSent != tc.rstSent || r.RSTReceived != tc.rstRecv || r.RSTReason != tc.reason {
				t.Errorf("syn=%d rst_sent=%v rst_received=%v reason=%q", r.SynRetries, r.RSTSent, r.RSTReceived, r.RSTReason)
			}
			if r.Handshake != tc.handshake {
				t.Errorf("handshake %d, want %d", r.Handshake, tc.handshake)
			}
			if r.Partial {
				t.Error("partial")
			}
			if r.Reason != tc.why {
				t.Errorf("reason %q, want %q", r.Reason, tc.why)
			}
			if r.Explanation() == "" {
				t.Error("no explanation")
			}
		})
	}
}

func mustFlush(recs []*Connection, _ *Correlator) []*Connection { return recs }

func TestSynRetryIntervals(t *testing.T) {
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{
		state(0, 1, StateClose, StateSynSent),
		other(1000, 1, EventRetransmit, StateSynSent),
		other(3000, 1, EventRetransmit, StateSynSent),
		other(7000, 1, EventRetransmit, StateSynSent),
		with(state(15000, 1, StateSynSent, StateClose), func(e *Event) { e.Errno = uint16(syscall.ETIMEDOUT) }),
	}, -1)))
	var got []int64
	for _, s := range r.Steps {
		if s.Kind == StepSynRetransmit {
			got = append(got, s.Since/ms)
		}
	}
	if want := []int64{1000, 2000, 4000}; !slices.Equal(got, want) {
		t.Errorf("intervals %v ms, want %v", got, want)
	}
	if r.Duration() != 15000*ms {
		t.Errorf("duration %d", r.Duration())
	}
}

// A record is held for CloseGrace after CLOSE so that a trailing RST or
// error lands on it, then emitted by Advance.
func TestCloseGrace(t *testing.T) {
	events := []Event{
		state(0, 1, StateClose, StateSynSent),
		state(1, 1, StateSynSent, StateEstablished),
		state(5, 1, StateEstablished, StateClose),
	}
	cfg := DefaultConfig()
	var recs []*Connection
	c := New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	for i := range events {
		c.Add(&events[i])
	}
	c.Advance(baseTime + 5*ms + cfg.CloseGrace - 1)
	if len(recs) != 0 {
		t.Fatalf("emitted before the grace period ended")
	}
	rst := other(6, 1, EventRSTSent, StateClose)
	c.Add(&rst)
	c.Advance(baseTime + 5*ms + cfg.CloseGrace)
	if len(recs) != 1 || recs[0].Outcome != OutcomeResetLocal {
		t.Fatalf("got %+v, want one reset_local record", recs)
	}
	// A RST from the timewait socket long after is stray, not a new record.
	late := other(60000, 1, EventRSTSent, StateTimeWait)
	c.Add(&late)
	c.Flush()
	if len(recs) != 1 || c.Stats().Stray != 1 {
		t.Errorf("records %d, stray %d; want 1, 1", len(recs), c.Stats().Stray)
	}
}

// A RST sent by the timewait socket that outlives a graceful close does not
// make the close abortive.
func TestTimewaitRSTKeepsClosed(t *testing.T) {
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{
		state(0, 1, StateClose, StateSynSent),
		state(1, 1, StateSynSent, StateEstablished),
		state(2, 1, StateEstablished, StateFinWait1),
		with(state(3, 1, StateFinWait1, StateFinWait2), func(e *Event) { e.SockDead = true }),
		with(state(3, 1, StateFinWait2, StateClose), func(e *Event) { e.SockDead = true }),
		other(4, 1, EventRSTSent, StateTimeWait),
	}, -1)))
	if r.Outcome != OutcomeClosed || !r.RSTSent {
		t.Errorf("outcome %s rst_sent %v; want closed with the RST noted", r.Outcome, r.RSTSent)
	}
}

func TestSynAckRetriesJoinAcceptedSocket(t *testing.T) {
	listener := uint64(7)
	synack := func(t int64) Event {
		return serverSide(other(t, listener, EventSynAckRetransmit, StateSynRecv))
	}
	recs, c := run(t, DefaultConfig(), []Event{
		serverSide(state(0, listener, StateClose, StateListen)),
		synack(1000),
		synack(3000),
		serverSide(state(3500, 2, StateListen, StateSynRecv)),
		serverSide(state(3500, 2, StateSynRecv, StateEstablished)),
	}, -1)
	_ = c
	var child, lst *Connection
	for _, r := range recs {
		switch r.Role {
		case RoleServer:
			child = r
		case RoleListener:
			lst = r
		}
	}
	if child == nil || lst == nil {
		t.Fatalf("records: %+v", recs)
	}
	if child.SynAckRetries != 2 || child.Start != baseTime+1000*ms {
		t.Errorf("child synack retries %d start %d", child.SynAckRetries, child.Start-baseTime)
	}
	if child.Steps[1].Kind != StepSynAckRetransmit || child.Steps[1].Since != 2000*ms {
		t.Errorf("steps %+v", child.Steps)
	}
	if lst.SynAckRetries != 2 {
		t.Errorf("listener synack retries %d", lst.SynAckRetries)
	}
}

func TestPartial(t *testing.T) {
	// Seen first in the middle of its life: started before tracing.
	// Its local port is not one connect() picks (ip_local_port_range), and
	// no listener holds it: the role is unknown.
	lowPort := func(e Event) Event { e.LPort = 20000; return e }
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{
		lowPort(state(0, 1, StateEstablished, StateFinWait1)),
		lowPort(with(state(1, 1, StateFinWait1, StateFinWait2), func(e *Event) { e.SockDead = true })),
		lowPort(with(state(1, 1, StateFinWait2, StateClose), func(e *Event) { e.SockDead = true })),
	}, -1)))
	if !r.Partial || r.Role != RoleUnknown || r.RoleInferred || r.Outcome != OutcomeClosed || r.ClosedBy != ClosedByLocal {
		t.Errorf("got %+v", r)
	}
	if want := []State{StateEstablished, StateFinWait1, StateFinWait2}; !slices.Equal(r.States, want) {
		t.Errorf("states %v, want %v", r.States, want)
	}
	// From an ephemeral port (40000), with no listener on it: a client.
	r = only(t, mustFlush(run(t, DefaultConfig(), []Event{state(0, 1, StateEstablished, StateFinWait1)}, -1)))
	if r.Role != RoleClient || !r.RoleInferred {
		t.Errorf("ephemeral local port: role %s inferred %v", r.Role, r.RoleInferred)
	}
	// A partial connection on a port we saw a listener on is a server.
	recs, _ := run(t, DefaultConfig(), []Event{
		serverSide(state(0, 9, StateClose, StateListen)),
		serverSide(other(1, 1, EventRetransmit, StateEstablished)),
	}, -1)
	for _, r := range recs {
		if r.Cookie == 1 && (r.Role != RoleServer || !r.RoleInferred || !r.Partial || r.Retransmits != 1) {
			t.Errorf("got %+v", r)
		}
	}
}

func TestConnectAgainOnSameSocket(t *testing.T) {
	recs, _ := run(t, DefaultConfig(), []Event{
		state(0, 1, StateClose, StateSynSent),
		with(state(1, 1, StateSynSent, StateClose), func(e *Event) { e.Errno = uint16(syscall.ECONNREFUSED) }),
		state(2, 1, StateClose, StateSynSent),
		state(3, 1, StateSynSent, StateEstablished),
	}, -1)
	if len(recs) != 2 || recs[0].Outcome != OutcomeRefused || recs[1].Outcome != OutcomeOpen {
		t.Fatalf("got %d records: %+v", len(recs), recs)
	}
}

func TestEviction(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnections = 2
	recs, c := run(t, cfg, []Event{
		state(0, 1, StateClose, StateSynSent),
		state(1, 2, StateClose, StateSynSent),
		state(2, 3, StateClose, StateSynSent),
	}, 3)
	if len(recs) != 1 || recs[0].Cookie != 1 || !recs[0].Evicted || recs[0].Outcome != OutcomeOpen {
		t.Fatalf("want the oldest evicted: %+v", recs)
	}
	if c.Live() != 2 || c.Stats().Evicted != 1 {
		t.Errorf("live %d evicted %d", c.Live(), c.Stats().Evicted)
	}
}

func TestStepsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSteps = 4
	events := []Event{state(0, 1, StateClose, StateSynSent), state(1, 1, StateSynSent, StateEstablished)}
	for i := range 10 {
		events = append(events, other(int64(2+i), 1, EventRetransmit, StateEstablished))
	}
	events = append(events, state(20, 1, StateEstablished, StateFinWait1))
	r := only(t, mustFlush(run(t, cfg, events, -1)))
	if r.Retransmits != 10 || r.StepsDropped != 8 || r.LastState() != StateFinWait1 {
		t.Errorf("retransmits %d dropped %d last %s, steps %d", r.Retransmits, r.StepsDropped, r.LastState(), len(r.Steps))
	}
}

func TestResetsWithoutSocket(t *testing.T) {
	e := Event{Time: baseTime, Type: EventRSTSent, NoSocket: true, LAddr: lo, RAddr: lo, LPort: 9}
	_, c := run(t, DefaultConfig(), []Event{e}, -1)
	if st := c.Stats(); st.ResetsNoSocket != 1 || st.Connections != 0 {
		t.Errorf("stats %+v", st)
	}
}

// The port is 0 when connect() reports SYN_SENT and again at CLOSE.
func TestTupleLearned(t *testing.T) {
	first := state(0, 1, StateClose, StateSynSent)
	first.LPort = 0
	last := state(2, 1, StateEstablished, StateClose)
	last.LPort = 0
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{first, state(1, 1, StateSynSent, StateEstablished), last}, -1)))
	if r.LPort != cliPort {
		t.Errorf("lport %d, want %d", r.LPort, cliPort)
	}
}

func TestStuckAlerts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 1000 * ms
	var alerts []Alert
	c := New(cfg, func(*Connection) {})
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	for _, e := range []Event{
		serverSide(state(0, 2, StateListen, StateSynRecv)),
		serverSide(state(0, 2, StateSynRecv, StateEstablished)),
		serverSide(with(state(100, 2, StateEstablished, StateCloseWait), func(e *Event) { e.SockDone = true })),
	} {
		c.Add(&e)
	}
	at := func(tms int64) int { c.Advance(baseTime + tms*ms); return len(alerts) }
	if n := at(1099); n != 0 {
		t.Fatalf("alert before StuckAfter: %+v", alerts)
	}
	if n := at(1100); n != 1 {
		t.Fatalf("%d alerts at StuckAfter, want 1", n)
	}
	a := alerts[0]
	if a.Kind != AlertCloseWait || a.For() != 1000*ms || a.Comm != "nginx" || a.LPort != srvPort || a.SinceUnknown {
		t.Errorf("alert %+v", a)
	}
	if n := at(1900); n != 1 {
		t.Errorf("repeated within the interval: %d", n)
	}
	if n := at(2100); n != 2 {
		t.Errorf("not repeated after the interval: %d", n)
	}
	// The application finally closes: no more alerts.
	e := serverSide(state(2200, 2, StateCloseWait, StateLastAck))
	c.Add(&e)
	if n := at(9000); n != 2 {
		t.Errorf("alerts after leaving CLOSE_WAIT: %d", n)
	}
	if c.Stats().Alerts != 2 {
		t.Errorf("stats alerts %d", c.Stats().Alerts)
	}
}

func TestSynSentAlertCountsRetries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 2000 * ms
	var alerts []Alert
	c := New(cfg, func(*Connection) {})
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	for _, e := range []Event{
		state(0, 1, StateClose, StateSynSent),
		other(1000, 1, EventRetransmit, StateSynSent),
		other(2000, 1, EventRetransmit, StateSynSent),
	} {
		c.Add(&e)
	}
	c.Advance(baseTime + 2000*ms)
	if len(alerts) != 1 || alerts[0].Kind != AlertSynSent || alerts[0].Retries != 2 {
		t.Errorf("alerts %+v", alerts)
	}
}

// An orphaned FIN_WAIT2 is followed through scans after its record is out:
// an alert when stuck, then its end.
func TestOrphanFollowedByScans(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 1000 * ms
	cfg.ScansNetNS = onlyNetNS(1)
	var alerts []Alert
	var recs []*Connection
	c := New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	dead := func(e *Event) { e.SockDead = true }
	// orphan: a client that closes first at t0+2 ms and is orphaned with its
	// FIN acked at t0+3 ms.
	orphan := func(t0 int64, cookie uint64) {
		for _, e := range []Event{
			state(t0, cookie, StateClose, StateSynSent),
			state(t0+1, cookie, StateSynSent, StateEstablished),
			state(t0+2, cookie, StateEstablished, StateFinWait1),
			with(state(t0+3, cookie, StateFinWait1, StateFinWait2), dead),
			with(state(t0+3, cookie, StateFinWait2, StateClose), dead),
		} {
			c.Add(&e)
		}
	}
	orphan(0, 1)
	c.Advance(baseTime + 100*ms)
	if len(recs) != 1 || recs[0].Reason != ReasonClosedLocalOrphan || c.Orphans() != 1 {
		t.Fatalf("records %d, orphans %d", len(recs), c.Orphans())
	}
	tw := Socket{Cookie: 1, State: StateTimeWait, Substate: StateFinWait2, LAddr: lo, RAddr: lo, LPort: cliPort, RPort: srvPort, NetNS: 1}
	other := Socket{Cookie: 9, State: StateTimeWait, Substate: StateTimeWait, LAddr: lo, RAddr: lo, LPort: 1, RPort: srvPort, NetNS: 1}
	scan := func(tms int64, socks ...Socket) {
		c.BeginScan()
		for i := range socks {
			c.ScanSocket(&socks[i])
		}
		c.EndScan(baseTime + tms*ms)
	}
	scan(500, tw, other)
	if len(alerts) != 0 {
		t.Fatalf("alert before StuckAfter: %+v", alerts)
	}
	scan(1003, tw, other)
	if len(alerts) != 1 || alerts[0].Kind != AlertFinWait2Orphan || alerts[0].For() != 1000*ms {
		t.Fatalf("alerts %+v", alerts)
	}
	if total, top, ok := c.TimeWait(5); !ok || total != 2 || len(top) != 1 || top[0].Count != 1 || top[0].Port != srvPort {
		t.Errorf("TIME_WAIT counts %d %+v %v", total, top, ok)
	}
	scan(3000) // gone: dropped by the kernel after tcp_fin_timeout
	if len(alerts) != 2 || alerts[1].Kind != AlertFinWait2OrphanEnded || alerts[1].Ended != "dropped" || c.Orphans() != 0 {
		t.Errorf("alerts %+v orphans %d", alerts, c.Orphans())
	}
	// An orphan gone before it was alerted on says nothing: under churn its
	// TIME_WAIT is reused between two scans, which is no news.
	orphan(4000, 2)
	c.Advance(baseTime + 4100*ms)
	if c.Orphans() != 1 {
		t.Fatalf("orphans %d, want the new one", c.Orphans())
	}
	scan(4500)
	scan(5000)
	if len(alerts) != 2 || c.Orphans() != 0 {
		t.Errorf("an orphan gone before StuckAfter: alerts %+v, orphans %d", alerts, c.Orphans())
	}
	// An orphan of a namespace the scans can't see is not followed.
	cfg.ScansNetNS = onlyNetNS(2)
	c2 := New(cfg, func(*Connection) {})
	for _, e := range []Event{
		state(2, 1, StateEstablished, StateFinWait1),
		with(state(3, 1, StateFinWait1, StateFinWait2), dead),
		with(state(3, 1, StateFinWait2, StateClose), dead),
	} {
		c2.Add(&e)
	}
	c2.Flush()
	if c2.Orphans() != 0 || c2.Stats().OrphansUnwatched != 1 {
		t.Errorf("orphans %d unwatched %d", c2.Orphans(), c2.Stats().OrphansUnwatched)
	}
}

func TestSeed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 1000 * ms
	var alerts []Alert
	var recs []*Connection
	c := New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	cw := Socket{Cookie: 5, State: StateCloseWait, LAddr: lo, RAddr: lo, LPort: srvPort, RPort: 5555, NetNS: 1, BytesAcked: 10}
	ln := Socket{Cookie: 6, State: StateListen, LAddr: lo, LPort: srvPort, NetNS: 1}
	tw := Socket{Cookie: 7, State: StateTimeWait, Substate: StateTimeWait, LAddr: lo, RAddr: lo, NetNS: 1}
	fresh := Socket{Cookie: 8, State: StateSynSent, LAddr: lo, RAddr: lo, RPort: srvPort, NetNS: 1}
	for _, s := range []Socket{ln, cw, tw, fresh} {
		c.Seed(baseTime, &s, 42, "nginx")
	}
	if c.Live() != 3 {
		t.Fatalf("live %d, want 3 (no record for a timewait socket)", c.Live())
	}
	// The start event of a seeded socket, still in the ring buffer at
	// the scan, replaces its partial record.
	e := state(1, 8, StateClose, StateSynSent)
	c.Add(&e)
	c.Advance(baseTime + 1000*ms)
	if len(alerts) != 1 || alerts[0].Cookie != 5 || !alerts[0].SinceUnknown || alerts[0].Kind != AlertCloseWait {
		t.Errorf("alerts %+v", alerts)
	}
	c.Flush()
	for _, r := range recs {
		switch r.Cookie {
		case 5:
			if !r.Partial || r.Role != RoleServer || r.PID != 42 || r.BytesSent != 10 { // a server never counts its SYN
				t.Errorf("seeded CLOSE_WAIT record %+v", r)
			}
		case 6:
			if r.Role != RoleListener {
				t.Errorf("seeded listener %+v", r)
			}
		case 8:
			if r.Partial || r.Role != RoleClient {
				t.Errorf("re-started record %+v", r)
			}
		}
	}
}

// The RST a connection receives was sent by this host's stack because the
// peer, also on this host, had no socket any more: half-open.
func TestHalfOpen(t *testing.T) {
	noSock := Event{Time: baseTime + 5*ms, Type: EventRSTSent, NoSocket: true, NetNS: 1,
		LAddr: lo, LPort: srvPort, RAddr: lo, RPort: cliPort}
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{
		state(0, 1, StateClose, StateSynSent),
		state(1, 1, StateSynSent, StateEstablished),
		noSock,
		other(5, 1, EventRSTReceived, StateEstablished),
		with(state(5, 1, StateEstablished, StateClose), func(e *Event) { e.Errno = uint16(syscall.ECONNRESET) }),
	}, -1)))
	if r.Outcome != OutcomeResetByPeer || r.Reason != ReasonHalfOpen || !r.HalfOpen {
		t.Errorf("got %s %s", r.Outcome, r.Reason)
	}
}

func TestFiguresAndHandshakeRTT(t *testing.T) {
	est := state(1, 1, StateSynSent, StateEstablished)
	est.SRTT = 40
	fin := state(5, 1, StateEstablished, StateFinWait1)
	fin.BytesAcked, fin.BytesReceived, fin.SRTT, fin.TotalRetrans = 100, 2000, 55, 3
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{state(0, 1, StateClose, StateSynSent), est, fin}, -1)))
	// bytes_acked counts the SYN: 99 data bytes.
	if r.HandshakeRTT != 40 || r.BytesSent != 99 || r.BytesReceived != 2000 || r.SRTT != 55 || r.SegsRetrans != 3 {
		t.Errorf("figures %+v", r)
	}
}

func TestMarkLost(t *testing.T) {
	var recs []*Connection
	c := New(DefaultConfig(), func(conn *Connection) { recs = append(recs, conn.Clone()) })
	e := state(0, 1, StateClose, StateSynSent)
	c.Add(&e)
	c.MarkLost()
	e2 := state(1, 2, StateClose, StateSynSent)
	c.Add(&e2)
	c.Flush()
	if !recs[0].Incomplete || recs[1].Incomplete {
		t.Errorf("incomplete flags %v %v", recs[0].Incomplete, recs[1].Incomplete)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Add(int64(i) * 1000 * 1000) // 1..1000 ms
	}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{50, 500e6}, {99, 990e6}} {
		got := float64(h.Percentile(tc.p))
		if got < tc.want*0.95 || got > tc.want*1.05 {
			t.Errorf("p%.0f = %.0f, want %.0f within 5%%", tc.p, got, tc.want)
		}
	}
	if h.Count() != 1000 {
		t.Errorf("count %d", h.Count())
	}
}

// An event at time 0 (a replay, a test) must not be taken for "not closed".
func TestCloseAtTimeZero(t *testing.T) {
	var n int
	c := New(Config{}, func(*Connection) { n++ })
	e := Event{Cookie: 1, Type: EventState, OldState: StateEstablished, NewState: StateClose, LAddr: lo, RAddr: lo}
	c.Add(&e)
	c.Flush()
	if n != 1 || c.Live() != 0 {
		t.Errorf("records %d, live %d", n, c.Live())
	}
}

// With FollowTimeWait, a connection handed to a TIME_WAIT socket is
// followed until a scan no longer sees it; an orphan whose FIN came is
// followed on in TIME_WAIT.
func TestTimeWaitEnd(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ScansNetNS, cfg.FollowTimeWait = onlyNetNS(1), true
	var alerts []Alert
	c := New(cfg, func(*Connection) {})
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	for _, e := range []Event{
		state(0, 1, StateClose, StateSynSent),
		state(1, 1, StateSynSent, StateEstablished),
		state(2, 1, StateEstablished, StateFinWait1),
		state(3, 1, StateFinWait1, StateFinWait2),
		with(state(4, 1, StateFinWait2, StateClose), func(e *Event) { e.SockDone = true }),
	} {
		c.Add(&e)
	}
	c.Advance(baseTime + 100*ms)
	tw := Socket{Cookie: 1, State: StateTimeWait, Substate: StateTimeWait, NetNS: 1}
	scan := func(tms int64, socks ...Socket) {
		c.BeginScan()
		for i := range socks {
			c.ScanSocket(&socks[i])
		}
		c.EndScan(baseTime + tms*ms)
	}
	scan(1000, tw)
	if len(alerts) != 0 || c.Orphans() != 1 {
		t.Fatalf("alerts %+v, followed %d", alerts, c.Orphans())
	}
	scan(60004)
	if len(alerts) != 1 || alerts[0].Kind != AlertTimeWaitEnded || alerts[0].For() != 60000*ms || c.Orphans() != 0 {
		t.Errorf("alerts %+v", alerts)
	}
	if c.Stats().Alerts != 0 {
		t.Errorf("the end of TIME_WAIT counted as an alert")
	}
}
