package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Snapshot is what the session reads from the tracer and the correlator,
// on its own goroutine, for the HTTP handler to serve.
type Snapshot struct {
	Time                time.Time
	Events              uint64 // events read from the kernel
	LostEvents          uint64 // events the kernel could not queue
	Evicted             uint64 // connections reported early: table full
	RecursionMisses     uint64
	DecodeErrors        uint64
	ResetsWithoutSocket uint64
	Tracked             int // connections tracked now
	// Sockets counts the sockets of the last scan by state; nil when no
	// scan ran (scans off), and then the gauge is absent.
	Sockets map[timeline.State]int
	// Stuck counts the connections held past --stuck-after, by state.
	Stuck map[timeline.State]int
	// What the host did: TCP packets dropped by reason, failed calls by
	// call and errno, and the listeners' accept queues (at most
	// maxListenerSeries, fullest first).
	Drops         map[string]uint64
	SyscallErrors map[timeline.SyscallErrno]uint64
	Listeners     []timeline.ListenerInfo
}

// maxListenerSeries bounds the listeners exported.
const maxListenerSeries = 256

// socketStates are the states of tcptrace_sockets, always all present
// (zeros included) once a scan ran, so that rules compare with 0.
var socketStates = []timeline.State{timeline.StateEstablished, timeline.StateSynSent, timeline.StateSynRecv,
	timeline.StateFinWait1, timeline.StateFinWait2, timeline.StateTimeWait, timeline.StateClose,
	timeline.StateCloseWait, timeline.StateLastAck, timeline.StateListen, timeline.StateClosing}

// stuckStates are the states of tcptrace_stuck_connections.
var stuckStates = []timeline.State{timeline.StateCloseWait, timeline.StateFinWait2, timeline.StateSynSent,
	timeline.StateSynRecv}

// Publish hands the HTTP handler a new snapshot. The maps become the
// collector's.
func (m *Metrics) Publish(s Snapshot) {
	sizes := make(map[string]int, len(m.sizes))
	for _, z := range m.sizes {
		sizes[z.name] = z.n()
	}
	m.health.mu.Lock()
	m.health.snap, m.health.sizes, m.health.published = s, sizes, true
	m.health.mu.Unlock()
}

// Healthy reports whether the session published a snapshot within maxAge
// of now: a tracer stuck (on a full stdout pipe, say) stops publishing.
func (m *Metrics) Healthy(now time.Time, maxAge time.Duration) (ok bool, last time.Time) {
	m.health.mu.Lock()
	defer m.health.mu.Unlock()
	if !m.health.published {
		return false, time.Time{}
	}
	return now.Sub(m.health.snap.Time) <= maxAge, m.health.snap.Time
}

// healthCollector serves the last snapshot as constant metrics.
type healthCollector struct {
	mu        sync.Mutex
	snap      Snapshot
	sizes     map[string]int
	published bool

	buildInfo                                                   prometheus.Metric
	events, lost, evicted, recursion, decode, noSocket, tracked *prometheus.Desc
	sockets, stuck, seriesDesc                                  *prometheus.Desc
	drops, syscallErrors, queueLen, queueMax, listenDrops       *prometheus.Desc
}

func newHealthCollector(version, kernel string) *healthCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	info := d("build_info", "1, labelled with tcptrace's version and the running kernel's release.", "version", "kernel")
	return &healthCollector{
		buildInfo: prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1, version, kernel),
		events:    d("events_total", "Kernel events read from the ring buffer."),
		lost:      d("lost_events_total", "Events the kernel could not queue: the ring buffer was full (--ring-size)."),
		evicted:   d("evicted_connections_total", "Connections reported early as open because the table was full (--max-connections)."),
		recursion: d("recursion_misses_total", "Times the kernel skipped a tcptrace program because another BPF program ran on that CPU."),
		decode:    d("decode_errors_total", "Ring buffer samples that could not be decoded."),
		noSocket:  d("resets_without_socket_total", "RSTs the stack sent with no socket: packets to ports nothing listens on."),
		tracked:   d("tracked_connections", "Connections tracked now (live and at rest)."),
		sockets: d("sockets", "TCP sockets by state in the last socket scan (timewait sockets by substate, request sockets as SYN_RECV); absent when scans are off.",
			"state"),
		stuck:      d("stuck_connections", "Connections held in a state past --stuck-after now (orphaned FIN_WAIT2 as of the last scan).", "state"),
		seriesDesc: d("metrics_series", "Label sets held now per family, at most --metrics-max-series plus the ~other ones.", "family"),
		drops: d("dropped_packets_total", "TCP packets the kernel dropped on this host, by its reason (enum skb_drop_reason; a number when this kernel has no name for it).",
			"reason"),
		syscallErrors: d("syscall_errors_total", "connect(), bind(), listen() and accept() calls on TCP sockets that failed, by call and errno.",
			"syscall", "errno"),
		queueLen: d("accept_queue_length", "Connections waiting in a listener's accept queue, when last looked at (on drops, and with the socket scans).",
			"listen", "netns"),
		queueMax: d("accept_queue_limit", "A listener's accept queue limit: its listen() backlog capped by net.core.somaxconn; the queue is full past it.",
			"listen", "netns"),
		listenDrops: d("listener_drops_total", "SYNs and final ACKs a listener dropped (its sk_drops: a full accept queue), when last looked at.",
			"listen", "netns"),
	}
}

func (h *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.buildInfo.Desc()
	for _, d := range []*prometheus.Desc{h.events, h.lost, h.evicted, h.recursion, h.decode, h.noSocket, h.tracked,
		h.sockets, h.stuck, h.seriesDesc, h.drops, h.syscallErrors, h.queueLen, h.queueMax, h.listenDrops} {
		ch <- d
	}
}

func (h *healthCollector) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	s, sizes := h.snap, h.sizes
	h.mu.Unlock()
	ch <- h.buildInfo
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(h.events, s.Events)
	counter(h.lost, s.LostEvents)
	counter(h.evicted, s.Evicted)
	counter(h.recursion, s.RecursionMisses)
	counter(h.decode, s.DecodeErrors)
	counter(h.noSocket, s.ResetsWithoutSocket)
	ch <- prometheus.MustNewConstMetric(h.tracked, prometheus.GaugeValue, float64(s.Tracked))
	if s.Sockets != nil {
		for _, st := range socketStates {
			ch <- prometheus.MustNewConstMetric(h.sockets, prometheus.GaugeValue, float64(s.Sockets[st]), st.String())
		}
	}
	for _, st := range stuckStates {
		ch <- prometheus.MustNewConstMetric(h.stuck, prometheus.GaugeValue, float64(s.Stuck[st]), st.String())
	}
	for name, n := range sizes {
		ch <- prometheus.MustNewConstMetric(h.seriesDesc, prometheus.GaugeValue, float64(n), name)
	}
	h.collectHost(ch, &s)
}

// collectHost serves the host-side counts: drops, failed calls, queues.
func (h *healthCollector) collectHost(ch chan<- prometheus.Metric, s *Snapshot) {
	for reason, n := range s.Drops {
		ch <- prometheus.MustNewConstMetric(h.drops, prometheus.CounterValue, float64(n), reason)
	}
	for k, n := range s.SyscallErrors {
		ch <- prometheus.MustNewConstMetric(h.syscallErrors, prometheus.CounterValue, float64(n),
			k.Syscall.String(), timeline.ErrnoName(k.Errno))
	}
	for i, l := range s.Listeners {
		if i >= maxListenerSeries {
			break
		}
		listen := string(timeline.AppendAddrPort(nil, l.Addr, l.Port))
		ns := strconv.FormatUint(uint64(l.NetNS), 10)
		ch <- prometheus.MustNewConstMetric(h.queueLen, prometheus.GaugeValue, float64(l.Queue.Len), listen, ns)
		ch <- prometheus.MustNewConstMetric(h.queueMax, prometheus.GaugeValue, float64(l.Queue.Max), listen, ns)
		ch <- prometheus.MustNewConstMetric(h.listenDrops, prometheus.CounterValue, float64(l.Queue.Drops), listen, ns)
	}
}
