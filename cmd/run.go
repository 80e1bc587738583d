package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// session connects the tracer, the correlator and the output.
type session struct {
	out    output.Writer
	corr   *timeline.Correlator
	events bool
	lost   uint64

	limit   int // --count; 0: none
	emitted int
	stop    context.CancelFunc
}

func (s *session) Event(e *timeline.Event) {
	if s.events {
		s.out.Event(e)
	}
	s.corr.Add(e)
}

func (s *session) Tick(now time.Time) {
	s.corr.Advance(now.UnixNano())
	if s.out.Flush() != nil {
		s.stop() // stdout is gone (a closed pipe): nothing more to do
	}
}

func (s *session) Lost(n uint64) {
	s.lost += n
	s.out.Lost(time.Now(), n, s.lost)
}

func (s *session) connection(c *timeline.Connection) {
	if s.limit > 0 && s.emitted >= s.limit {
		return
	}
	s.emitted++
	s.out.Connection(c)
	if s.limit > 0 && s.emitted >= s.limit {
		s.stop()
	}
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

	var out output.Writer
	if o.output == "json" {
		out = output.NewJSON(stdout)
	} else {
		out = output.NewText(stdout, nil)
	}
	s := &session{out: out, events: o.events, limit: o.count, stop: cancel}
	corrCfg := timeline.DefaultConfig()
	corrCfg.MaxConnections = o.maxConnections
	s.corr = timeline.New(corrCfg, s.connection)

	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, nil, 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}

	runErr := t.Run(ctx, s)
	if s.limit == 0 || s.emitted < s.limit {
		s.corr.Flush()
	}
	sum := output.NewSummary(s.corr.Stats())
	sum.Duration = time.Since(started)
	sum.LostEvents = t.LostEvents()
	sum.RecursionMisses = t.RecursionMisses()
	sum.DecodeErrors = t.DecodeErrors()
	outErr := out.Summary(sum)
	if runErr != nil {
		return runErr
	}
	if outErr != nil && !errors.Is(outErr, syscall.EPIPE) {
		return fmt.Errorf("writing output: %w", outErr)
	}
	return nil
}
