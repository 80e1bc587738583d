package metrics

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

var (
	lo = netip.MustParseAddr("127.0.0.1")
	t0 = time.Unix(1_700_000_000, 0)
)

func newTest(t *testing.T, cfg Config) *Metrics {
	t.Helper()
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = 100
	}
	if cfg.SeriesTTL == 0 {
		cfg.SeriesTTL = 10 * time.Minute
	}
	cfg.Version, cfg.Kernel = "test", "6.18"
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// conn is a record at t0 + atSec seconds.
func conn(role timeline.Role, outcome timeline.Outcome, reason string, lport, rport uint16, atSec int64) *timeline.Connection {
	end := t0.UnixNano() + atSec*1e9
	return &timeline.Connection{Start: end - 1e6, End: end, LAddr: lo, RAddr: lo, LPort: lport, RPort: rport,
		Role: role, Outcome: outcome, Reason: reason, Handshake: -1, Comm: "curl", NetNS: 7, UID: 1000}
}

func gather(t *testing.T, m *Metrics, expected string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(expected), names...); err != nil {
		t.Error(err)
	}
}

// Each record counts once in connections_total, with the port of its
// service; clients also feed connect_duration and SYN retries, servers
// SYN+ACK retries; RSTs count by direction and the record's reason.
func TestConnectionRecords(t *testing.T) {
	m := newTest(t, Config{})
	ok := conn(timeline.RoleClient, timeline.OutcomeClosed, "closed_local", 40000, 8080, 0)
	ok.Handshake, ok.HandshakeRTT, ok.SynRetries, ok.Retransmits = 1_500_000_000, 300, 1, 2
	refused := conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40001, 9999, 0)
	refused.RSTReceived = true
	srv := conn(timeline.RoleServer, timeline.OutcomeResetLocal, "linger_abort", 8080, 40002, 0)
	srv.RSTSent, srv.SynAckRetries, srv.HandshakeRTT = true, 1, 20
	toEphemeral := conn(timeline.RoleClient, timeline.OutcomeClosed, "closed_local", 40003, 45000, 0)
	for _, c := range []*timeline.Connection{ok, refused, srv, toEphemeral} {
		m.Connection(c)
	}
	gather(t, m, `
# HELP tcptrace_connections_total Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.
# TYPE tcptrace_connections_total counter
tcptrace_connections_total{container="",namespace="",outcome="closed",pod="",port="8080",reason="closed_local",role="client"} 1
tcptrace_connections_total{container="",namespace="",outcome="closed",pod="",port="ephemeral",reason="closed_local",role="client"} 1
tcptrace_connections_total{container="",namespace="",outcome="refused",pod="",port="9999",reason="nothing_listening",role="client"} 1
tcptrace_connections_total{container="",namespace="",outcome="reset_local",pod="",port="8080",reason="linger_abort",role="server"} 1
# HELP tcptrace_resets_total Connections that sent or received a RST, by direction and by the connection's reason (the same words as connections_total).
# TYPE tcptrace_resets_total counter
tcptrace_resets_total{container="",direction="received",namespace="",pod="",port="9999",reason="nothing_listening"} 1
tcptrace_resets_total{container="",direction="sent",namespace="",pod="",port="8080",reason="linger_abort"} 1
# HELP tcptrace_syn_retransmits_total SYN retransmissions of client connections.
# TYPE tcptrace_syn_retransmits_total counter
tcptrace_syn_retransmits_total{container="",namespace="",pod="",port="8080"} 1
tcptrace_syn_retransmits_total{container="",namespace="",pod="",port="9999"} 0
tcptrace_syn_retransmits_total{container="",namespace="",pod="",port="ephemeral"} 0
# HELP tcptrace_synack_retransmits_total SYN+ACK retransmissions of server connections.
# TYPE tcptrace_synack_retransmits_total counter
tcptrace_synack_retransmits_total{container="",namespace="",pod="",port="8080"} 1
# HELP tcptrace_retransmits_total Retransmissions after the handshake.
# TYPE tcptrace_retransmits_total counter
tcptrace_retransmits_total{container="",namespace="",pod="",port="8080",role="client"} 2
tcptrace_retransmits_total{container="",namespace="",pod="",port="8080",role="server"} 0
tcptrace_retransmits_total{container="",namespace="",pod="",port="9999",role="client"} 0
tcptrace_retransmits_total{container="",namespace="",pod="",port="ephemeral",role="client"} 0
`, "tcptrace_connections_total", "tcptrace_resets_total", "tcptrace_syn_retransmits_total",
		"tcptrace_synack_retransmits_total", "tcptrace_retransmits_total")

	connect := gatherHistogram(t, m, "tcptrace_connect_duration_seconds")
	if len(connect) != 1 || connect[0].count != 1 || connect[0].sum != 1.5 || connect[0].labels["port"] != "8080" {
		t.Errorf("connect_duration_seconds: %+v", connect)
	}
	rtt := gatherHistogram(t, m, "tcptrace_handshake_rtt_seconds")
	if len(rtt) != 2 {
		t.Fatalf("handshake_rtt_seconds: %+v", rtt)
	}
	for _, h := range rtt {
		want := map[string]float64{"client": 300e-6, "server": 20e-6}[h.labels["role"]]
		if h.count != 1 || h.sum != want {
			t.Errorf("handshake_rtt_seconds %+v, want sum %g", h, want)
		}
	}
}

type histogram struct {
	labels map[string]string
	count  uint64
	sum    float64
}

func gatherHistogram(t *testing.T, m *Metrics, name string) []histogram {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []histogram
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			h := histogram{labels: map[string]string{}, count: mt.GetHistogram().GetSampleCount(), sum: mt.GetHistogram().GetSampleSum()}
			for _, l := range mt.GetLabel() {
				h.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, h)
		}
	}
	return out
}

// Past MaxSeries label sets, new ones go to a series whose open-ended labels
// are ~other while role, outcome and reason stay; each fold is counted.
func TestSeriesCapFolds(t *testing.T) {
	m := newTest(t, Config{MaxSeries: 2})
	for i, port := range []uint16{1001, 1002, 1003, 1004, 1003} {
		c := conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40000, port, int64(i))
		m.Connection(c)
	}
	m.Connection(conn(timeline.RoleClient, timeline.OutcomeClosed, "closed_local", 40000, 1001, 9)) // a new label set: folded too
	gather(t, m, `
# HELP tcptrace_connections_total Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.
# TYPE tcptrace_connections_total counter
tcptrace_connections_total{container="",namespace="",outcome="refused",pod="",port="1001",reason="nothing_listening",role="client"} 1
tcptrace_connections_total{container="",namespace="",outcome="refused",pod="",port="1002",reason="nothing_listening",role="client"} 1
tcptrace_connections_total{container="~other",namespace="~other",outcome="refused",pod="~other",port="~other",reason="nothing_listening",role="client"} 3
tcptrace_connections_total{container="~other",namespace="~other",outcome="closed",pod="~other",port="~other",reason="closed_local",role="client"} 1
`, "tcptrace_connections_total")
	if n := testutil.ToFloat64(m.folds.WithLabelValues("tcptrace_connections_total")); n != 4 {
		t.Errorf("folded %g updates, want 4", n)
	}
}

// A label set not updated for SeriesTTL is deleted; one updated stays.
func TestSeriesExpire(t *testing.T) {
	m := newTest(t, Config{SeriesTTL: time.Minute})
	m.Connection(conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40000, 1001, 0))
	m.Connection(conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40000, 1002, 0))
	m.Expire(t0.Add(50 * time.Second))
	m.Connection(conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40000, 1002, 50))
	m.Expire(t0.Add(61 * time.Second))
	gather(t, m, `
# HELP tcptrace_connections_total Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.
# TYPE tcptrace_connections_total counter
tcptrace_connections_total{container="",namespace="",outcome="refused",pod="",port="1002",reason="nothing_listening",role="client"} 2
`, "tcptrace_connections_total")
	if n := len(m.retrans.series); n != 1 {
		t.Errorf("retransmits_total label sets after expiry: %d, want 1", n)
	}
}

// --metrics-labels adds labels in the order given; a process name that is
// not UTF-8 is made valid rather than refused.
func TestExtraLabels(t *testing.T) {
	if err := CheckExtraLabels([]string{"comm", "pid"}); err == nil || !strings.Contains(err.Error(), `unknown label "pid"`) ||
		!strings.Contains(err.Error(), "remote_addr") {
		t.Errorf("unknown label: %v", err)
	}
	if err := CheckExtraLabels([]string{"comm", "comm"}); err == nil {
		t.Error("a label given twice was accepted")
	}
	m := newTest(t, Config{Labels: []string{"comm", "remote_addr", "uid"}})
	c := conn(timeline.RoleClient, timeline.OutcomeRefused, "nothing_listening", 40000, 1001, 0)
	c.Comm = "bad\xffname"
	m.Connection(c)
	gather(t, m, `
# HELP tcptrace_connections_total Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.
# TYPE tcptrace_connections_total counter
tcptrace_connections_total{comm="bad�name",container="",namespace="",outcome="refused",pod="",port="1001",reason="nothing_listening",remote_addr="127.0.0.1",role="client",uid="1000"} 1
`, "tcptrace_connections_total")
}

// Container, pod and namespace come from the lookup; a container without a
// name shows its short id.
func TestContainerLabels(t *testing.T) {
	lookup := func(cgroup uint64) *containers.Info {
		switch cgroup {
		case 10:
			return &containers.Info{ID: strings.Repeat("ab", 32), Name: "web", Pod: "web-7d9f", Namespace: "shop"}
		case 11:
			return &containers.Info{ID: strings.Repeat("cd", 32)}
		}
		return nil
	}
	m := newTest(t, Config{Lookup: lookup})
	for _, cg := range []uint64{10, 11, 12} {
		c := conn(timeline.RoleServer, timeline.OutcomeClosed, "closed_peer", 80, 40000, 0)
		c.Cgroup = cg
		m.Connection(c)
	}
	gather(t, m, `
# HELP tcptrace_connections_total Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.
# TYPE tcptrace_connections_total counter
tcptrace_connections_total{container="",namespace="",outcome="closed",pod="",port="80",reason="closed_peer",role="server"} 1
tcptrace_connections_total{container="cdcdcdcdcdcd",namespace="",outcome="closed",pod="",port="80",reason="closed_peer",role="server"} 1
tcptrace_connections_total{container="web",namespace="shop",outcome="closed",pod="web-7d9f",port="80",reason="closed_peer",role="server"} 1
`, "tcptrace_connections_total")
}

func TestServicePort(t *testing.T) {
	r := PortRange{32768, 60999}
	for _, tc := range []struct {
		role         timeline.Role
		lport, rport uint16
		want         string
	}{
		{timeline.RoleClient, 40000, 443, "443"},
		{timeline.RoleClient, 40000, 50051, "ephemeral"}, // a service inside the range: see the README
		{timeline.RoleServer, 8080, 40000, "8080"},
		{timeline.RoleServer, 45000, 40000, "45000"}, // servers keep their port: bounded by the listeners
		{timeline.RoleListener, 22, 0, "22"},
		{timeline.RoleUnknown, 22, 40000, "22"},
		{timeline.RoleUnknown, 40000, 5432, "5432"},
		{timeline.RoleUnknown, 40000, 40001, "ephemeral"},
	} {
		c := conn(tc.role, timeline.OutcomeOpen, "open", tc.lport, tc.rport, 0)
		if got := r.servicePort(c); got != tc.want {
			t.Errorf("%s %d -> %d: port %q, want %q", tc.role, tc.lport, tc.rport, got, tc.want)
		}
	}
	if r, err := parsePortRange("1024\t65000\n"); err != nil || r != (PortRange{1024, 65000}) {
		t.Errorf("parsePortRange: %v %v", r, err)
	}
	for _, bad := range []string{"", "1 2 3", "70000 1", "5 4"} {
		if _, err := parsePortRange(bad); err == nil {
			t.Errorf("parsePortRange(%q) accepted", bad)
		}
	}
}

// Alerts count by kind, every kind present from the start.
func TestAlerts(t *testing.T) {
	m := newTest(t, Config{})
	m.Alert(&timeline.Alert{Kind: timeline.AlertCloseWait})
	m.Alert(&timeline.Alert{Kind: timeline.AlertCloseWait})
	if got := testutil.ToFloat64(m.alerts.WithLabelValues("close_wait")); got != 2 {
		t.Errorf("close_wait alerts %g", got)
	}
	if n := testutil.CollectAndCount(m.alerts); n != 7 {
		t.Errorf("%d alert kinds, want 7", n)
	}
}

// The health counters and gauges come from the last published snapshot;
// the socket gauge is absent until a scan ran.
func TestSnapshot(t *testing.T) {
	m := newTest(t, Config{})
	stuck := map[timeline.State]int{timeline.StateCloseWait: 2, timeline.StateFinWait2: 0, timeline.StateSynSent: 0, timeline.StateSynRecv: 0}
	m.Publish(Snapshot{Time: t0, Events: 10, LostEvents: 3, Evicted: 1, RecursionMisses: 2, DecodeErrors: 0, Tracked: 5, Stuck: stuck})
	gather(t, m, `
# HELP tcptrace_lost_events_total Events the kernel could not queue: the ring buffer was full (--ring-size).
# TYPE tcptrace_lost_events_total counter
tcptrace_lost_events_total 3
# HELP tcptrace_stuck_connections Connections held in a state past --stuck-after now (orphaned FIN_WAIT2 as of the last scan).
# TYPE tcptrace_stuck_connections gauge
tcptrace_stuck_connections{state="CLOSE_WAIT"} 2
tcptrace_stuck_connections{state="FIN_WAIT2"} 0
tcptrace_stuck_connections{state="SYN_RECV"} 0
tcptrace_stuck_connections{state="SYN_SENT"} 0
`, "tcptrace_lost_events_total", "tcptrace_stuck_connections", "tcptrace_sockets")
	m.Publish(Snapshot{Time: t0, Sockets: map[timeline.State]int{timeline.StateListen: 2, timeline.StateCloseWait: 1}})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tcptrace_sockets" && len(mf.GetMetric()) != len(socketStates) {
			t.Errorf("tcptrace_sockets has %d states, want all %d", len(mf.GetMetric()), len(socketStates))
		}
	}
}

// /healthz: 503 before the first snapshot and when the session stalls, 200
// while it publishes.
func TestHealthz(t *testing.T) {
	m := newTest(t, Config{})
	h := m.Handler()
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("before tracing: %d %q", code, body)
	}
	m.Publish(Snapshot{Time: time.Now()})
	if code, body := get(); code != http.StatusOK {
		t.Errorf("tracing: %d %q", code, body)
	}
	m.Publish(Snapshot{Time: time.Now().Add(-time.Minute)})
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "stalled") {
		t.Errorf("stalled: %d %q", code, body)
	}
}

// A port in use is an error that says so and what to do.
func TestListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String())
	if !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), "pick another port") {
		t.Errorf("port in use: %v", err)
	}
}

// What the host did: drops by reason, failed calls by errno, and each
// listener's accept queue, from the last snapshot.
func TestHostSeries(t *testing.T) {
	m := newTest(t, Config{})
	m.Publish(Snapshot{Time: t0, Drops: map[string]uint64{"NETFILTER_DROP": 3},
		SyscallErrors: map[timeline.SyscallErrno]uint64{{Syscall: timeline.SyscallAccept, Errno: 24}: 90},
		Listeners: []timeline.ListenerInfo{{NetNS: 7, Addr: netip.MustParseAddr("127.0.0.1"), Port: 7002,
			Queue: timeline.Queue{Len: 2, Max: 1, Drops: 24, Known: true}}}})
	gather(t, m, `
# HELP tcptrace_accept_queue_length Connections waiting in a listener's accept queue, when last looked at (on drops, and with the socket scans).
# TYPE tcptrace_accept_queue_length gauge
tcptrace_accept_queue_length{listen="127.0.0.1:7002",netns="7"} 2
# HELP tcptrace_accept_queue_limit A listener's accept queue limit: its listen() backlog capped by net.core.somaxconn; the queue is full past it.
# TYPE tcptrace_accept_queue_limit gauge
tcptrace_accept_queue_limit{listen="127.0.0.1:7002",netns="7"} 1
# HELP tcptrace_dropped_packets_total TCP packets the kernel dropped on this host, by its reason (enum skb_drop_reason; a number when this kernel has no name for it).
# TYPE tcptrace_dropped_packets_total counter
tcptrace_dropped_packets_total{reason="NETFILTER_DROP"} 3
# HELP tcptrace_listener_drops_total SYNs and final ACKs a listener dropped (its sk_drops: a full accept queue), when last looked at.
# TYPE tcptrace_listener_drops_total counter
tcptrace_listener_drops_total{listen="127.0.0.1:7002",netns="7"} 24
# HELP tcptrace_syscall_errors_total connect(), bind(), listen() and accept() calls on TCP sockets that failed, by call and errno.
# TYPE tcptrace_syscall_errors_total counter
tcptrace_syscall_errors_total{errno="EMFILE",syscall="accept"} 90
`, "tcptrace_accept_queue_length", "tcptrace_accept_queue_limit", "tcptrace_dropped_packets_total",
		"tcptrace_listener_drops_total", "tcptrace_syscall_errors_total")
}
