// Package metrics exposes what tcptrace sees as Prometheus metrics:
// connection records, retransmissions and resets as counters and
// histograms, socket states and stuck connections as gauges, alerts, and the
// tracer's own health. Every family is bounded (see family and the label
// scheme in labels.go).
//
// Records and alerts come in on the tracing session's goroutine
// (Connection, Alert, Publish, Expire); the HTTP handler only collects, so
// nothing here ever calls into the correlator from another goroutine.
package metrics

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

const namespace = "tcptrace"

// Config configures the metrics.
type Config struct {
	// MaxSeries bounds the label sets of each per-connection family; past
	// it, new ones are folded into "~other" series.
	MaxSeries int
	// SeriesTTL: a label set not updated for this long is deleted.
	SeriesTTL time.Duration
	// Labels are extra labels (names of ExtraLabels), in order.
	Labels []string
	// Lookup names the container of a cgroup; nil: no container labels.
	Lookup containers.LookupFunc
	// Ephemeral is the ephemeral port range (port label).
	Ephemeral PortRange
	// Version and Kernel are the build_info labels.
	Version, Kernel string
}

// Buckets of the histograms, in seconds. connect() duration spans a
// loopback handshake (tens of µs) to the give-up time of tcp_syn_retries=6
// (127 s); the doubling buckets from 1 s separate the SYN retries (1, 3, 7,
// 15, 31, 63 s with exponential backoff).
var (
	connectBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
		1, 2, 4, 8, 16, 32, 64, 128}
	rttBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
		0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
)

// Metrics holds the registry and the families.
type Metrics struct {
	cfg      Config
	registry *prometheus.Registry
	extras   []func(*timeline.Connection) string

	connections   *family[prometheus.Counter]
	connect       *family[prometheus.Observer]
	handshakeRTT  *family[prometheus.Observer]
	synRetrans    *family[prometheus.Counter]
	synAckRetrans *family[prometheus.Counter]
	retrans       *family[prometheus.Counter]
	resets        *family[prometheus.Counter]
	expiring      []interface{ expire(before int64) }
	sizes         []sizer

	alerts *prometheus.CounterVec
	folds  *prometheus.CounterVec // tcptrace_metrics_folded_series_total{family}
	// baseLabels are the labels of every family, after its enumerated
	// ones: baseLabels and Config.Labels.
	baseLabels []string
	health     *healthCollector

	now        int64 // Unix ns, from the last record or tick: marks series as used
	lastExpiry int64
	base       []string // scratch: the base and extra label values of a record
	values     []string // scratch: one family's label values
}

type sizer struct {
	name string
	n    func() int
}

// New makes the metrics and registers them, with the Go runtime's and the
// process's own.
func New(cfg Config) (*Metrics, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	m := &Metrics{cfg: cfg, registry: prometheus.NewRegistry()}
	for _, n := range cfg.Labels {
		m.extras = append(m.extras, ExtraLabels[n])
	}
	m.baseLabels = append(slices.Clone(baseLabels), cfg.Labels...)
	m.folds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "metrics_folded_series_total",
		Help: "Updates that found their family at --metrics-max-series label sets and went to a series whose open-ended labels are ~other.",
	}, []string{"family"})
	m.registry.MustRegister(m.folds)
	m.newFamilies()
	m.newAlerts()
	m.health = newHealthCollector(cfg.Version, cfg.Kernel)
	m.registry.MustRegister(m.health)
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m, nil
}

// checkConfig rejects what can't be and fills in the defaults.
func checkConfig(cfg *Config) error {
	if err := CheckExtraLabels(cfg.Labels); err != nil {
		return err
	}
	if cfg.MaxSeries < 1 {
		return fmt.Errorf("the series cap must be at least 1, got %d", cfg.MaxSeries)
	}
	if cfg.SeriesTTL <= 0 {
		return fmt.Errorf("the series TTL must be positive, got %s", cfg.SeriesTTL)
	}
	if cfg.Ephemeral == (PortRange{}) {
		cfg.Ephemeral = DefaultEphemeral
	}
	return nil
}

// newFamilies makes the per-connection families.
func (m *Metrics) newFamilies() {
	m.connections = m.counter("connections_total",
		"Connection records, one per connection when it ends (or is still open when tracing stops, or evicted), by role, outcome and reason.",
		"role", "outcome", "reason")
	m.connect = m.histogram("connect_duration_seconds",
		"Clients: connect() to ESTABLISHED, SYN retries included, of the connections that got established.",
		connectBuckets)
	m.handshakeRTT = m.histogram("handshake_rtt_seconds",
		"The handshake's RTT sample: SYN to SYN+ACK for a client, SYN+ACK to ACK for a server (none when the SYN was retransmitted).",
		rttBuckets, "role")
	m.synRetrans = m.counter("syn_retransmits_total", "SYN retransmissions of client connections.")
	m.synAckRetrans = m.counter("synack_retransmits_total", "SYN+ACK retransmissions of server connections.")
	m.retrans = m.counter("retransmits_total", "Retransmissions after the handshake.", "role")
	m.resets = m.counter("resets_total",
		"Connections that sent or received a RST, by direction and by the connection's reason (the same words as connections_total).",
		"direction", "reason")
}

// newAlerts makes the alert counter, every kind at zero from the start
// (for rate() and increase()).
func (m *Metrics) newAlerts() {
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "alerts_total",
		Help: "Alerts raised: connections stuck past --stuck-after in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or SYN_RECV, and orphaned FIN_WAIT2 endings."},
		[]string{"kind"})
	for k := timeline.AlertCloseWait; k <= timeline.AlertTimeWaitEnded; k++ {
		m.alerts.WithLabelValues(k.String())
	}
	m.registry.MustRegister(m.alerts)
}

// counter makes a counter family: its labels are the enumerated ones,
// then the base labels.
func (m *Metrics) counter(name, help string, enumerated ...string) *family[prometheus.Counter] {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
		append(slices.Clone(enumerated), m.baseLabels...))
	return addFamily(m, name, len(enumerated), vec, vec.WithLabelValues, vec.DeleteLabelValues)
}

// histogram makes a histogram family, labelled as counter's.
func (m *Metrics) histogram(name, help string, buckets []float64, enumerated ...string) *family[prometheus.Observer] {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help,
		Buckets: buckets}, append(slices.Clone(enumerated), m.baseLabels...))
	return addFamily(m, name, len(enumerated), vec, vec.WithLabelValues, vec.DeleteLabelValues)
}

// addFamily registers vec and bounds its series with a family, whose first
// enumerated labels are kept when folding.
func addFamily[T any](m *Metrics, name string, enumerated int, vec prometheus.Collector,
	with func(...string) T, del func(...string) bool) *family[T] {
	m.registry.MustRegister(vec)
	f := &family[T]{name: namespace + "_" + name, with: with, delete: del, max: m.cfg.MaxSeries,
		fixed: make([]bool, enumerated+len(m.baseLabels)), series: make(map[string]*series[T])}
	for i := range enumerated {
		f.fixed[i] = true
	}
	f.folds = m.folds.WithLabelValues(f.name)
	m.expiring = append(m.expiring, f)
	m.sizes = append(m.sizes, sizer{f.name, func() int { return len(f.series) }})
	return f
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Connection counts one connection record.
func (m *Metrics) Connection(c *timeline.Connection) {
	if c.End > m.now {
		m.now = c.End
	}
	now := m.now
	container, pod, ns := containerLabels(m.cfg.Lookup, c.Cgroup)
	m.base = append(m.base[:0], m.cfg.Ephemeral.servicePort(c), container, pod, ns)
	for _, x := range m.extras {
		m.base = append(m.base, x(c))
	}
	role := c.Role.String()

	m.with(role, c.Outcome.String(), c.Reason)
	m.connections.get(m.values, now).Inc()
	switch c.Role {
	case timeline.RoleClient:
		if c.Handshake >= 0 {
			m.with()
			m.connect.get(m.values, now).Observe(float64(c.Handshake) / 1e9)
		}
		m.with()
		m.synRetrans.get(m.values, now).Add(float64(c.SynRetries))
	case timeline.RoleServer:
		m.with()
		m.synAckRetrans.get(m.values, now).Add(float64(c.SynAckRetries))
	}
	if c.HandshakeRTT != 0 {
		m.with(role)
		m.handshakeRTT.get(m.values, now).Observe(float64(c.HandshakeRTT) / 1e6)
	}
	if c.Role != timeline.RoleListener {
		m.with(role)
		m.retrans.get(m.values, now).Add(float64(c.Retransmits))
	}
	if c.RSTSent {
		m.with("sent", c.Reason)
		m.resets.get(m.values, now).Inc()
	}
	if c.RSTReceived {
		m.with("received", c.Reason)
		m.resets.get(m.values, now).Inc()
	}
}

// with sets m.values to the enumerated values then the record's base ones.
func (m *Metrics) with(enumerated ...string) {
	m.values = append(append(m.values[:0], enumerated...), m.base...)
}

// Alert counts one alert.
func (m *Metrics) Alert(a *timeline.Alert) {
	m.alerts.WithLabelValues(a.Kind.String()).Inc()
}

// Expire deletes the series not updated for SeriesTTL; call it regularly
// (it walks the series only every SeriesTTL/10, at most once a minute).
func (m *Metrics) Expire(now time.Time) {
	n := now.UnixNano()
	if n > m.now {
		m.now = n
	}
	every := min(m.cfg.SeriesTTL/10, time.Minute).Nanoseconds()
	if n-m.lastExpiry < every {
		return
	}
	m.lastExpiry = n
	for _, f := range m.expiring {
		f.expire(n - m.cfg.SeriesTTL.Nanoseconds())
	}
}
