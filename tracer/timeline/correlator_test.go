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
	}{
		{
			name: "client closes first, orphaned in FIN_WAIT2",
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
			events: append(slices.Clone(handshake),
				with(state(5, 1, StateEstablished, StateCloseWait), done),
				state(7, 1, StateCloseWait, StateLastAck),
				state(8, 1, StateLastAck, StateClose)),
			outcome: OutcomeClosed, by: ClosedByPeer, role: RoleClient, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateCloseWait, StateLastAck, StateClose},
		},
		{
			name: "simultaneous close",
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
			events: []Event{
				state(0, 1, StateClose, StateSynSent),
				state(3, 1, StateSynSent, StateClose),
			},
			outcome: OutcomeAborted, role: RoleClient, handshake: -1,
			states: []State{StateSynSent, StateClose},
		},
		{
			name: "reset by peer",
			events: append(slices.Clone(handshake),
				other(5, 1, EventRSTReceived, StateEstablished),
				with(state(5, 1, StateEstablished, StateClose), errno(syscall.ECONNRESET))),
			outcome: OutcomeResetByPeer, role: RoleClient, rstRecv: true, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "SO_LINGER 0: the RST trails the CLOSE transition",
			events: append(slices.Clone(handshake),
				state(5, 1, StateEstablished, StateClose),
				with(other(5, 1, EventRSTSent, StateClose), func(e *Event) { e.RSTReason = "TCP_STATE" })),
			outcome: OutcomeResetLocal, role: RoleClient, rstSent: true, reason: "TCP_STATE", handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "retransmissions gave up",
			events: append(slices.Clone(handshake),
				other(300, 1, EventRetransmit, StateEstablished),
				with(state(900, 1, StateEstablished, StateClose), errno(syscall.ETIMEDOUT))),
			outcome: OutcomeTimeout, role: RoleClient, handshake: 1 * ms,
			states: []State{StateSynSent, StateEstablished, StateClose},
		},
		{
			name: "accepted, server closes first",
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
			events: []Event{
				serverSide(state(0, 3, StateClose, StateListen)),
				serverSide(state(9, 3, StateListen, StateClose)),
			},
			outcome: OutcomeClosed, by: ClosedByLocal, role: RoleListener, handshake: -1,
			states: []State{StateListen, StateClose},
		},
		{
			name:    "still open when tracing stops",
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
	r := only(t, mustFlush(run(t, DefaultConfig(), []Event{
		state(0, 1, StateEstablished, StateFinWait1),
		with(state(1, 1, StateFinWait1, StateFinWait2), func(e *Event) { e.SockDead = true }),
		with(state(1, 1, StateFinWait2, StateClose), func(e *Event) { e.SockDead = true }),
	}, -1)))
	if !r.Partial || r.Role != RoleUnknown || r.Outcome != OutcomeClosed || r.ClosedBy != ClosedByLocal {
		t.Errorf("got %+v", r)
	}
	if want := []State{StateEstablished, StateFinWait1, StateFinWait2}; !slices.Equal(r.States, want) {
		t.Errorf("states %v, want %v", r.States, want)
	}
	// A partial connection on a port we saw a listener on is a server.
	recs, _ := run(t, DefaultConfig(), []Event{
		serverSide(state(0, 9, StateClose, StateListen)),
		serverSide(other(1, 1, EventRetransmit, StateEstablished)),
	}, -1)
	for _, r := range recs {
		if r.Cookie == 1 && (r.Role != RoleServer || !r.Partial || r.Retransmits != 1) {
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
