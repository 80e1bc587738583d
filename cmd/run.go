package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

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
}

func (s *session) Event(e *timeline.Event) {
	if s.events {
		s.out.Event(e)
	}
	s.corr.Add(e)
}

func (s *session) Tick(now time.Time) {
	s.corr.Advance(now.UnixNano())
	if s.pairs != nil {
		s.pairs.Advance(now.UnixNano())
	}
	asked := s.timeWaitAsked.Swap(false)
	if asked || s.corr.WantsScan() && now.Sub(s.lastScan) >= s.scanEvery {
		s.scan(now)
	}
	if asked {
		total, top, _ := s.corr.TimeWait(10)
		s.out.TimeWait(now, total, top)
	}
	if s.out.Flush() != nil {
		s.stop() // stdout is gone (a closed pipe): nothing more to do
	}
}

// scan walks the namespace's TCP sockets. On hosts with many sockets a scan
// costs milliseconds: waiting 50 times as long before the next keeps it
// under 2% of a CPU.
func (s *session) scan(now time.Time) {
	start := time.Now()
	if err := s.tracer.Scan(s.corr, now.UnixNano()); err != nil {
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

func (s *session) alert(a *timeline.Alert) { s.out.Alert(a) }

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

func run(parent context.Context, o *options, cfg tracer.Config, stdout io.Writer) error {
	if parent == nil {
		parent = context.Background()
	}
	// A write to a closed pipe (tcptrace | head) must fail with EPIPE, not
	// kill the process before it detaches.
	signal.Ignore(syscall.SIGPIPE)

	// First SIGINT/SIGTERM: stop, flush, summarise. Once it arrived the
	// handler is removed, so a second Ctrl-C kills the process at once.
	ctx, stopSignals := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	go func() {
		<-ctx.Done()
		stopSignals()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.duration > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, o.duration)
		defer cancelTimeout()
	}

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
	opts := output.Options{CgroupPath: cgroups.Path}
	var out output.Writer
	if o.output == "json" {
		out = output.NewJSON(stdout, opts)
	} else {
		out = output.NewText(stdout, nil, opts)
	}
	s := &session{tracer: t, out: out, events: o.events, onlyAnomalies: o.onlyAnomalies, limit: o.count,
		stop: cancel, scanEvery: time.Second}
	sys := t.Sysctls()
	corrCfg := timeline.DefaultConfig()
	corrCfg.MaxConnections = o.maxConnections
	corrCfg.StuckAfter = int64(o.stuckAfter)
	corrCfg.ScanNetNS = sys.NetNS
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
	s.corr.SetSysctls(sys)
	if err := t.Seed(s.corr, time.Now().UnixNano()); err != nil {
		// Tracing works without it: say what is missing, and go on.
		fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
		s.scanErr = err
	}

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			s.timeWaitAsked.Store(true)
		}
	}()

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
	if s.limit == 0 || s.emitted < s.limit {
		s.corr.Flush()
	}
	if s.pairs != nil && (s.limit == 0 || s.emitted < s.limit) {
		s.pairs.Flush()
	}
	s.scan(time.Now()) // TIME_WAIT sockets left, for the summary
	st := s.corr.Stats()
	sum := output.NewSummary(st)
	sum.Duration = time.Since(started)
	sum.LostEvents = t.LostEvents()
	sum.RecursionMisses = t.RecursionMisses()
	sum.DecodeErrors = t.DecodeErrors()
	sum.TimeWaitTotal, sum.TimeWaitTop, sum.TimeWaitKnown = s.corr.TimeWait(5)
	if s.pairs != nil {
		sum.Paired = s.pairs.Paired()
	}
	outErr := out.Summary(sum)
	if runErr != nil {
		return runErr
	}
	if outErr != nil && !errors.Is(outErr, syscall.EPIPE) {
		return fmt.Errorf("writing output: %w", outErr)
	}
	return nil
}
