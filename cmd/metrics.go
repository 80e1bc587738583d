package cmd

import (
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/metrics"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// With --metrics the session scans the namespace's sockets this often (or
// less often when scans are costly: scanEvery), for tcptrace_sockets.
const metricsScanEvery = 15 * time.Second

// metricsPublishEvery: how often the session reads its counters for the
// HTTP handler. Scrapes see figures at most this old.
const metricsPublishEvery = time.Second

// checkMetricsFlags validates the --metrics flags (usage errors).
func (o *options) checkMetricsFlags() error {
	if o.output == "none" && o.metrics == "" {
		return usagef("-o none prints nothing: use it with --metrics ADDR")
	}
	if o.metrics == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(o.metrics)
	if err != nil {
		return usagef("--metrics %q: want host:port, such as 127.0.0.1:9464, or :9464 for all addresses", o.metrics)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return usagef("--metrics %q: the port must be a number from 1 to 65535", o.metrics)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return usagef("--metrics %q: the host must be an IP address of this host or localhost (or empty: all addresses)", o.metrics)
	}
	if err := metrics.CheckExtraLabels(o.metricsLabels); err != nil {
		return usagef("--metrics-labels: %v", err)
	}
	if o.metricsMaxSeries < 1 {
		return usagef("--metrics-max-series must be at least 1, got %d", o.metricsMaxSeries)
	}
	if o.metricsSeriesTTL <= 0 {
		return usagef("--metrics-series-ttl must be positive, got %s", o.metricsSeriesTTL)
	}
	return nil
}

// sessionMetrics is the session's side of the metrics: it feeds them on the
// session's goroutine.
type sessionMetrics struct {
	m           *metrics.Metrics
	stop        func()
	lastPublish time.Time
}

// startMetrics binds --metrics and serves it; before tracing starts, so that
// a bad address fails at once.
func startMetrics(o *options, containerLookup containers.LookupFunc) (*sessionMetrics, error) {
	if o.metrics == "" {
		return nil, nil
	}
	eph, err := metrics.ReadEphemeral()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcptrace: metrics: %v; taking %d-%d as the ephemeral ports\n", err, eph.Low, eph.High)
	}
	m, err := metrics.New(metrics.Config{
		MaxSeries: o.metricsMaxSeries,
		SeriesTTL: o.metricsSeriesTTL,
		Labels:    o.metricsLabels,
		Lookup:    containerLookup,
		Ephemeral: eph,
		Version:   version(),
		Kernel:    kernelRelease(),
	})
	if err != nil {
		return nil, usagef("--metrics: %v", err)
	}
	ln, err := metrics.Listen(o.metrics)
	if err != nil {
		return nil, err
	}
	return &sessionMetrics{m: m, stop: m.Serve(ln)}, nil
}

func (sm *sessionMetrics) close() {
	if sm != nil {
		sm.stop()
	}
}

// metricsTick scans now and then for the socket gauges, and publishes the
// counters every metricsPublishEvery.
func (s *session) metricsTick(now time.Time) {
	sm := s.metrics
	if s.scanErr == nil && now.Sub(s.lastScan) >= max(s.scanEvery, metricsScanEvery) {
		s.scan(now, false) // a full scan: the gauges count every namespace's sockets
	}
	sm.m.Expire(now)
	if now.Sub(sm.lastPublish) < metricsPublishEvery {
		return
	}
	sm.lastPublish = now
	st := s.corr.Stats()
	snap := metrics.Snapshot{
		Time:                now,
		Events:              st.Events,
		LostEvents:          s.tracer.LostEvents(),
		Evicted:             st.Evicted,
		RecursionMisses:     s.tracer.RecursionMisses(),
		DecodeErrors:        s.tracer.DecodeErrors(),
		ResetsWithoutSocket: st.ResetsNoSocket,
		Tracked:             s.corr.Live(),
		Stuck:               s.corr.Stuck(now.UnixNano()),
		Drops:               maps.Clone(st.Drops),
		SyscallErrors:       maps.Clone(st.SyscallErrors),
		Listeners:           s.corr.Listeners(),
	}
	if s.scanErr == nil {
		snap.Sockets = s.tracer.LastScanStates()
	}
	sm.m.Publish(snap)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// newOutput makes the writer -o asks for.
func newOutput(o *options, stdout io.Writer, opts output.Options) output.Writer {
	switch {
	case o.output == "json":
		return output.NewJSON(stdout, opts)
	case o.output == "none":
		return discard{}
	case o.ladder:
		return newLadder(stdout, o, opts)
	}
	return output.NewText(stdout, nil, opts)
}

// discard is -o none: metrics only, nothing on stdout, not even the
// summary. Messages on stderr stay.
type discard struct{}

func (discard) Connection(*timeline.Connection) error                      { return nil }
func (discard) Event(*timeline.Event) error                                { return nil }
func (discard) Alert(*timeline.Alert) error                                { return nil }
func (discard) TimeWait(time.Time, uint64, []timeline.EndpointCount) error { return nil }
func (discard) Lost(time.Time, uint64, uint64) error                       { return nil }
func (discard) Summary(*output.Summary) error                              { return nil }
func (discard) Flush() error                                               { return nil }
