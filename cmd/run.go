package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// session connects the tracer, the correlator and the output.
type session struct {
	tracer        *tracer.Tracer
	out           output.Writer
	corr          *timeline.Correlator
	pairs         *timeline.Pairer // nil: --pair-wait 0
	events        bool
	onlyAnomalies bool
	containers    *containers.Resolver
	lost          uint64

	limit   int // --count; 0: none
	emitted int
	stop    context.CancelFunc

	// Socket scans (iter/tcp) follow orphaned FIN_WAIT2 sockets after their
	// records are out; they run while there are some, no more often than
	// scanEvery, which grows with the cost of a scan.
	scanEvery time.Duration
	lastScan  time.Time
	// timeWaitAsked is set by SIGUSR1: print TIME_WAIT counts now.
	timeWaitAsked atomic.Bool
	scanErr       error

	metrics *sessionMetrics // --metrics; nil when off (cmd/metrics.go)

	// listeners: when the listeners' accept queues were last looked at.
	listeners *tracer.ListenWatch

	// misses: the tracer's recursion misses as last read, at missesRead.
	misses     uint64
	missesRead time.Time
}

func (s *session) Event(e *timeline.Event) {
	if e.Cgroup != 0 && e.Type == timeline.EventState &&
		(e.OldState == timeline.StateClose || e.OldState == timeline.StateListen || e.OldState == timeline.StateSynRecv) {
		// A socket's first transition (connect, listen, accepted): learn
		// its container now, while its cgroup exists, so that its record
		// names it. Not at every event: each carries the cgroup.
		s.containers.Lookup(e.Cgroup)
	}
	if s.events {
		if e.Cgroup == 0 && e.Cookie != 0 {
			e.Cgroup = s.corr.Cgroup(e.Cookie) // a timewait socket's events carry none
		}
		s.out.Event(e)
	}
	s.corr.Add(e)
}

// Stalled and StallScanEnded take the flush scans' notices of connections
// held by a full receive window (tracer.StallHandler).
func (s *session) Stalled(e *timeline.Event) { s.corr.Stalled(e) }

func (s *session) StallScanEnded(now int64) { s.corr.StallScanEnded(now) }

func (s *session) Tick(now time.Time) {
	s.corr.Advance(now.UnixNano())
	if s.pairs != nil {
		s.pairs.Advance(now.UnixNano())
	}
	if err := s.tracer.PollListeners(s.listeners, s.corr, now); err != nil && s.scanErr == nil {
		fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
		s.scanErr = err
	}
	asked := s.timeWaitAsked.Swap(false)
	switch {
	case asked:
		s.scan(now, false)
	case s.corr.WantsScan() && now.Sub(s.lastScan) >= s.scanEvery:
		s.scan(now, true)
	}
	// Events of a program the kernel skipped (a softirq landing in it)
	// are lost too: a skipped CLOSE takes the socket's queued events with
	// it. Read once a second: a syscall per program.
	if now.Sub(s.missesRead) >= time.Second {
		s.missesRead = now
		if m := s.tracer.RecursionMisses(); m > s.misses {
			s.Lost(m - s.misses)
			s.misses = m
		}
	}
	if s.metrics != nil {
		s.metricsTick(now)
	}
	if asked {
		total, top, _ := s.corr.TimeWait(10)
		s.out.TimeWait(now, total, top)
	}
	if s.out.Flush() != nil {
		s.stop() // stdout is gone (a closed pipe): nothing more to do
	}
}

// scan walks the namespaces' TCP sockets: all of them for the TIME_WAIT
// counts, those with followed sockets only to follow them. On hosts with
// many sockets or namespaces a scan costs milliseconds: waiting 50 times as
// long before the next keeps it under 2% of a CPU.
func (s *session) scan(now time.Time, follow bool) {
	start := time.Now()
	scan := s.tracer.Scan
	if follow {
		scan = s.tracer.Follow
	}
	if err := scan(s.corr, now.UnixNano()); err != nil {
		if s.scanErr == nil {
			fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
		}
		s.scanErr = err
		return
	}
	s.lastScan = now
	s.scanEvery = max(time.Second, 50*time.Since(start))
}

func (s *session) Lost(n uint64) {
	s.lost += n
	s.corr.MarkLost()
	s.out.Lost(time.Now(), n, s.lost)
}

func (s *session) connection(c *timeline.Connection) {
	if s.metrics != nil {
		s.metrics.m.Connection(c) // every record, whatever is printed
	}
	if s.limit > 0 && s.emitted >= s.limit {
		return
	}
	if s.onlyAnomalies && !c.Anomalous() {
		return
	}
	s.emitted++
	s.out.Connection(c)
	if s.limit > 0 && s.emitted >= s.limit {
		s.stop()
	}
}

func (s *session) alert(a *timeline.Alert) {
	if s.metrics != nil {
		s.metrics.m.Alert(a)
	}
	s.out.Alert(a)
}

// startCPUProfile profiles the process into path until the returned func runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// run traces until the context, a signal, --duration or --count ends it,
// then writes the summary.
func run(parent context.Context, o *options, cfg tracer.Config, stdout io.Writer) error {
	// A write to a closed pipe (tcptrace | head) must fail with EPIPE, not
	// kill the process before it detaches.
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel, cleanup := runContext(parent, o.duration)
	defer cleanup()

	// Containers are named for the output and the metrics' labels alike.
	resolver := o.newResolver()
	defer resolver.Close()
	sm, err := startMetrics(o, resolver.Lookup)
	if err != nil {
		return err
	}
	defer sm.close()

	started := time.Now()
	t, err := tracer.New(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	for _, r := range t.Kernel().Refused {
		fmt.Fprintf(os.Stderr, "tcptrace: running without %s\n", r)
	}

	var cgroups tracer.CgroupPaths
	stopFilter, err := o.startContainerFilter(ctx, t, resolver)
	if err != nil {
		return err
	}
	defer stopFilter()
	opts := output.Options{CgroupPath: cgroups.Path, Container: resolver.Lookup, Compact: o.compact}
	s := &session{tracer: t, out: newOutput(o, stdout, opts), events: o.events, onlyAnomalies: o.onlyAnomalies,
		containers: resolver, limit: o.count, stop: cancel, scanEvery: time.Second, metrics: sm,
		listeners: tracer.NewListenWatch()}
	s.startCorrelator(o)
	defer s.watchSIGUSR1()()

	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, nil, 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	runErr := t.Run(ctx, s)
	return s.finish(started, runErr)
}

// runContext is the tracing's context: done at the first SIGINT or SIGTERM,
// after d (0: no limit), or when stop is called. cleanup releases it all.
func runContext(parent context.Context, d time.Duration) (ctx context.Context, stop, cleanup func()) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	cancelTimeout := context.CancelFunc(func() {})
	if d > 0 {
		ctx, cancelTimeout = context.WithTimeout(ctx, d)
	}
	// Room for both signals of a quick double Ctrl-C: signal.Notify drops
	// what a full channel cannot take.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go stopOnSignals(ctx, cancel, sigs, done)
	var once sync.Once
	return ctx, cancel, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
		})
		cancelTimeout()
		cancel()
	}
}

// stopOnSignals: the first SIGINT or SIGTERM stops the tracing; once it is
// stopping, for that or any reason, the next one kills the process at once,
// as if tcptrace had no handler, so that a graceful stop that cannot finish
// (stdout a full pipe nobody reads) still gives way. Both signals are taken
// from the channel in order, however late this goroutine runs: removing
// the handler after the first (as signal.NotifyContext's stop does) left a
// window in which the second was caught and ignored.
func stopOnSignals(ctx context.Context, cancel context.CancelFunc, sigs chan os.Signal, done chan struct{}) {
	select {
	case <-sigs:
		cancel()
	case <-ctx.Done():
	case <-done:
		return
	}
	select {
	case s := <-sigs:
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if sig, ok := s.(syscall.Signal); ok {
			_ = syscall.Kill(os.Getpid(), sig)
		}
	case <-done:
	}
}

// startCorrelator makes the correlator (and the pairer, with --pair-wait)
// and seeds it with the connections already open.
func (s *session) startCorrelator(o *options) {
	t := s.tracer
	corrCfg := timeline.DefaultConfig()
	corrCfg.MaxConnections = o.maxConnections
	corrCfg.StuckAfter = int64(o.stuckAfter)
	corrCfg.ScansNetNS = t.ScansNetNS
	corrCfg.ScanNetNS = t.ScanNetNS
	corrCfg.DropsTraced = t.DropsTraced()
	// The end of each TIME_WAIT is a line per connection this host closed
	// first: shown with the other per-event detail only.
	corrCfg.FollowTimeWait = o.events
	emit := s.connection
	if o.pairWait > 0 {
		// Both ends of a connection on this host come out together.
		pcfg := timeline.DefaultPairConfig()
		pcfg.Wait = int64(o.pairWait)
		s.pairs = timeline.NewPairer(pcfg, s.paired)
		emit = s.pairs.Add
	}
	s.corr = timeline.New(corrCfg, emit)
	s.corr.OnAlert(s.alert)
	s.corr.SetSysctls(t.Sysctls())
	if err := t.Seed(s.corr, time.Now().UnixNano()); err != nil {
		// Tracing works without it: say what is missing, and go on.
		fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
		s.scanErr = err
	}
}

// watchSIGUSR1 has SIGUSR1 ask for the TIME_WAIT counts; it returns what
// stops that.
func (s *session) watchSIGUSR1() (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			s.timeWaitAsked.Store(true)
		}
	}()
	return func() { signal.Stop(usr1) }
}

// finish flushes what is still held and writes the summary; runErr is how
// the tracing ended.
func (s *session) finish(started time.Time, runErr error) error {
	if s.limit == 0 || s.emitted < s.limit {
		s.corr.Flush()
	}
	if s.pairs != nil && (s.limit == 0 || s.emitted < s.limit) {
		s.pairs.Flush()
	}
	s.scan(time.Now(), false) // TIME_WAIT sockets left, for the summary
	outErr := s.out.Summary(s.summary(started))
	if runErr != nil {
		return runErr
	}
	if outErr != nil && !errors.Is(outErr, syscall.EPIPE) {
		return fmt.Errorf("writing output: %w", outErr)
	}
	return nil
}

// summary is what the tracing saw, from the correlator and the tracer.
func (s *session) summary(started time.Time) *output.Summary {
	t := s.tracer
	sum := output.NewSummary(s.corr.Stats())
	sum.Duration = time.Since(started)
	sum.LostEvents = t.LostEvents()
	sum.RingRecords = t.Records()
	sum.RecursionMisses = t.RecursionMisses()
	sum.DecodeErrors = t.DecodeErrors()
	sum.RetransmitsFailed = t.RetransmitsFailed()
	sum.TimeWaitTotal, sum.TimeWaitTop, sum.TimeWaitKnown = s.corr.TimeWait(5)
	if s.pairs != nil {
		sum.Paired = s.pairs.Paired()
	}
	return sum
}
