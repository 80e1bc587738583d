package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/top"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// topOptions are tcptrace top's flags: the filters of the root command
// and its own.
type topOptions struct {
	options
	interval time.Duration
	once     bool
	headless bool
	group    string
	sort     string
}

func newTopCommand() *cobra.Command {
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show TCP health live, per process, container, pod, service port or peer",
		Long: `tcptrace top shows, on a screen refreshed every second, which processes,
containers, pods, service ports or peers have TCP trouble right now: open
connections by state and how long the oldest has been stuck, new
connections, failures (refused, timeout, reset), retransmissions and RSTs
per second, handshake times; the alerts as they fire; and, for a selected
row, its most recent connection records with the ladder of one.

Keys: g/G or 1-5 grouping, s/S sort column, r reverse, up/down select,
enter records, esc back, p or space pause, q quit.

--once prints one screen as plain text (or -o json: one JSON object) and
exits. Needs root, or CAP_BPF and CAP_PERFMON.`,
		Example: `  sudo tcptrace top
  sudo tcptrace top --group remote --port 443
  sudo tcptrace top --once -o json | jq '.rows[] | select(.close_wait > 0)'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("tcptrace top takes no arguments, got %q (filters are flags: see --help)", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTop(cmd.Context(), &o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *topOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.DurationVar(&o.interval, "interval", time.Second, "refresh the screen this often")
	f.BoolVar(&o.once, "once", false, "print one screen as plain text (or JSON with -o json) after one --interval, and exit")
	f.StringVarP(&o.output, "output", "o", "text", "with --once: text or json")
	f.StringVar(&o.group, "group", "process", "group rows by: process, container, pod, port or remote")
	f.StringVar(&o.sort, "sort", "worst", "sort rows by: worst, name, or a column's heading in lower case (est, closw, ref/s...)")
	f.UintSliceVar(&o.ports, "port", nil, fmt.Sprintf("only connections with this local or remote port (repeatable, up to %d)", tracer.MaxPorts))
	f.IntVar(&o.pid, "pid", 0, "only connections owned by this process ID")
	f.StringVar(&o.comm, "comm", "", "only connections owned by processes with this name")
	f.BoolVarP(&o.ipv4, "ipv4", "4", false, "only IPv4")
	f.BoolVarP(&o.ipv6, "ipv6", "6", false, "only IPv6")
	f.StringVar(&o.netns, "netns", "", "only this network namespace: an inode number, or a path such as /proc/PID/ns/net or /run/netns/NAME")
	f.StringVar(&o.cgroup, "cgroup", "", "only sockets of this cgroup v2: its directory, or its path in the hierarchy")
	f.StringArrayVar(&o.ctr.containers, "container", nil, "only sockets of this container: its name, or an id (prefix); repeatable")
	f.StringArrayVar(&o.ctr.pods, "pod", nil, "only sockets of this Kubernetes pod: NAME, NAMESPACE/NAME or its UID; repeatable")
	f.StringArrayVar(&o.ctr.runtimeEndpoints, "runtime-endpoint", nil, "container runtime API socket, RUNTIME=PATH; repeatable")
	f.DurationVar(&o.stuckAfter, "stuck-after", 30*time.Second,
		"alert on connections stuck this long in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or SYN_RECV (0: never)")
	f.IntVar(&o.maxConnections, "max-connections", timeline.DefaultConfig().MaxConnections, "most connections tracked at once")
	f.IntVar(&o.ringSize, "ring-size", tracer.RingBytesDefault, ringSizeHelp)
	f.StringVar(&o.readyFile, "ready-file", "", "create this file once the probes are attached")
	// For make bench: top's work (aggregation, a snapshot and a screen
	// rendered every --interval) without a terminal; a JSON summary at exit.
	f.BoolVar(&o.headless, "headless", false, "run without a screen until SIGINT, then print a JSON summary")
	_ = f.MarkHidden("headless")
}

// check validates top's own flags.
func (o *topOptions) check() (top.GroupBy, int, error) {
	if o.interval < 100*time.Millisecond || o.interval > time.Hour {
		return 0, 0, usagef("--interval must be between 100ms and 1h, got %s", o.interval)
	}
	g, ok := top.ParseGroupBy(o.group)
	if !ok {
		return 0, 0, usagef("--group must be one of %v, got %q", top.GroupNames(), o.group)
	}
	s, ok := top.ParseSort(o.sort)
	if !ok {
		return 0, 0, usagef("--sort must be one of %v, got %q", top.SortNames(), o.sort)
	}
	if o.output != "text" && o.output != "json" {
		return 0, 0, usagef("-o must be text or json, got %q", o.output)
	}
	if o.output == "json" && !o.once && !o.headless {
		return 0, 0, usagef("-o json is for --once (a snapshot for scripts); the live screen is for people")
	}
	return g, s, nil
}

// topSession wires the tracer to the correlator and the model. Everything
// but the wanted grouping is used by the tracer's goroutine only.
type topSession struct {
	t     *tracer.Tracer
	corr  *timeline.Correlator
	model *top.Model
	ctrs  *containers.Resolver

	want     atomic.Uint32 // the grouping the screen shows
	shown    top.GroupBy   // the grouping of the last snapshot
	interval time.Duration
	lastSnap time.Time
	publish  func(*top.Snapshot)

	scanEvery, fullEvery time.Duration
	lastScan, lastFull   time.Time
	scanErr              error
	misses               uint64
	missesRead           time.Time
	// panicAfter > 0: panic at that snapshot (TCPTRACE_TOP_TEST_PANIC, for
	// the test that the terminal is given back).
	panicAfter int
}

func (s *topSession) Event(e *timeline.Event) {
	if e.Cgroup != 0 && e.Type == timeline.EventState &&
		(e.OldState == timeline.StateClose || e.OldState == timeline.StateListen || e.OldState == timeline.StateSynRecv) {
		s.ctrs.Lookup(e.Cgroup) // learn its container while its cgroup exists
	}
	s.corr.Add(e)
	s.count(e)
}

// count feeds the model the events it counts per second: new connections,
// handshakes, retransmissions and RSTs. The owner is the live record's
// when there is one (an event may come from softirq, with none).
func (s *topSession) count(e *timeline.Event) {
	var lc timeline.LiveConn
	known := e.Cookie != 0 && s.corr.LiveConn(e.Cookie, &lc)
	if !known {
		lc = timeline.LiveConn{PID: e.PID, Comm: e.Comm, Cgroup: e.Cgroup, LAddr: e.LAddr, RAddr: e.RAddr,
			LPort: e.LPort, RPort: e.RPort}
		if e.Cookie == 0 && e.Type == timeline.EventRSTSent {
			// The stack's answer to a segment for no socket (a SYN to a
			// closed port): this host is the side that was asked, a
			// service; grouped by its port, not the peer's.
			lc.Role = timeline.RoleServer
		}
	}
	c := top.LiveOf(&lc)
	switch e.Type {
	case timeline.EventState:
		switch {
		case e.OldState == timeline.StateClose && e.NewState == timeline.StateSynSent,
			e.OldState == timeline.StateSynRecv && e.NewState == timeline.StateEstablished && lc.Role == timeline.RoleServer:
			s.model.Count(top.NewConn, &c, e.Time)
		case e.OldState == timeline.StateSynSent && e.NewState == timeline.StateEstablished &&
			known && lc.Role == timeline.RoleClient && !lc.Partial:
			s.model.Handshake(&c, e.Time-lc.Start, e.Time)
		}
	case timeline.EventRetransmit:
		s.model.Count(top.Retrans, &c, e.Time)
	case timeline.EventRSTSent, timeline.EventRSTReceived:
		s.model.Count(top.RST, &c, e.Time)
	}
}

func (s *topSession) Lost(uint64) { s.corr.MarkLost() }

// Stalled and StallScanEnded take the flush scans' notices of connections
// held by a full receive window (tracer.StallHandler): zero-window alerts.
func (s *topSession) Stalled(e *timeline.Event) { s.corr.Stalled(e) }

func (s *topSession) StallScanEnded(now int64) { s.corr.StallScanEnded(now) }

func (s *topSession) Tick(now time.Time) {
	s.corr.Advance(now.UnixNano())
	s.scan(now)
	if now.Sub(s.missesRead) >= time.Second {
		s.missesRead = now
		if m := s.t.RecursionMisses(); m > s.misses {
			s.misses = m
			s.corr.MarkLost()
		}
	}
	if now.Sub(s.lastSnap) >= s.interval || top.GroupBy(s.want.Load()) != s.shown {
		s.snapshot(now)
		if s.panicAfter > 0 {
			if s.panicAfter--; s.panicAfter == 0 {
				panic("TCPTRACE_TOP_TEST_PANIC")
			}
		}
	}
}

// scan counts TIME_WAIT sockets (a full scan, every 5 s at most) and
// follows orphans (as the stream does); a scan costing more is run less
// often, so as to stay under 2% of a CPU.
func (s *topSession) scan(now time.Time) {
	full := now.Sub(s.lastFull) >= s.fullEvery
	if !full && !(s.corr.WantsScan() && now.Sub(s.lastScan) >= s.scanEvery) {
		return
	}
	start := time.Now()
	scan := s.t.Follow
	if full {
		scan = s.t.Scan
	}
	if err := scan(s.corr, now.UnixNano()); err != nil {
		s.scanErr = err
		s.lastFull = now // not again at every tick
		return
	}
	s.lastScan = now
	cost := time.Since(start)
	s.scanEvery = max(time.Second, 50*cost)
	if full {
		s.lastFull = now
		s.fullEvery = max(5*time.Second, 50*cost)
	}
}

// snapshot counts the open connections of the wanted grouping and hands
// the screen's data over.
func (s *topSession) snapshot(now time.Time) {
	s.lastSnap = now
	g := top.GroupBy(s.want.Load())
	s.shown = g
	ns := now.UnixNano()
	s.model.BeginLive(g)
	s.corr.EachLive(func(lc *timeline.LiveConn) { s.model.Live(g, lc, ns) })
	st := s.corr.Stats()
	tw, _, twKnown := s.corr.TimeWait(0)
	s.publish(s.model.Snapshot(g, ns, top.Counts{Events: st.Events, Lost: s.t.LostEvents(), Evicted: st.Evicted,
		Records: st.Connections, Alerts: st.Alerts, TimeWait: tw, TimeWaitKnown: twKnown}))
}

func runTop(parent context.Context, o *topOptions, stdout io.Writer) error {
	group, sortBy, err := o.check()
	if err != nil {
		return err
	}
	cfg, err := o.tracerConfig()
	if err != nil {
		return err
	}
	screen := !o.once && !o.headless
	if screen && (!isTerminal(os.Stdout) || !isTerminal(os.Stdin)) {
		return usagef("tcptrace top draws on a terminal, and this is none: use --once (or --once -o json) for a snapshot")
	}
	// The screen shows connections in every state as they are now: the
	// kernel must send each event as it happens, not a socket's events
	// together when it closes (the stream's default).
	cfg.SendAtOnce = true
	if parent == nil {
		parent = context.Background()
	}
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	resolver := o.newResolver()
	defer resolver.Close()
	started := time.Now()
	t, err := tracer.New(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	stopFilter, err := o.startContainerFilter(ctx, t, resolver)
	if err != nil {
		return err
	}
	defer stopFilter()

	s := newTopSession(o, t, resolver)
	s.want.Store(uint32(group))
	if err := t.Seed(s.corr, time.Now().UnixNano()); err != nil {
		fmt.Fprintf(os.Stderr, "tcptrace: %v (connections older than tcptrace are not shown)\n", err)
	}
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, nil, 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	switch {
	case o.once:
		return topOnce(ctx, o, s, sortBy, stdout)
	case o.headless:
		return topHeadless(ctx, o, s, started, stdout)
	}
	return topScreen(ctx, s, group, sortBy, resolver)
}

func newTopSession(o *topOptions, t *tracer.Tracer, resolver *containers.Resolver) *topSession {
	mcfg := top.DefaultConfig()
	mcfg.StuckAfter = int64(o.stuckAfter)
	mcfg.Container = resolver.Lookup
	s := &topSession{t: t, ctrs: resolver, model: top.New(mcfg, time.Now().UnixNano()), interval: o.interval,
		scanEvery: time.Second, fullEvery: 5 * time.Second, publish: func(*top.Snapshot) {}}
	s.panicAfter, _ = strconv.Atoi(os.Getenv("TCPTRACE_TOP_TEST_PANIC"))
	corrCfg := timeline.DefaultConfig()
	corrCfg.MaxConnections = o.maxConnections
	corrCfg.StuckAfter = int64(o.stuckAfter)
	corrCfg.ScansNetNS = t.ScansNetNS
	s.corr = timeline.New(corrCfg, func(c *timeline.Connection) { s.model.Record(c, c.End) })
	s.corr.OnAlert(s.model.Alert)
	s.corr.SetSysctls(t.Sysctls())
	return s
}

// topOnce traces for one interval and prints one screen.
func topOnce(ctx context.Context, o *topOptions, s *topSession, sortBy int, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.interval)
	defer cancel()
	s.lastSnap = time.Now() // no snapshot before the end
	if err := s.t.Run(ctx, s); err != nil {
		return err
	}
	var snap *top.Snapshot
	s.publish = func(x *top.Snapshot) { snap = x }
	s.lastFull = time.Time{}
	s.scan(time.Now())
	s.snapshot(time.Now())
	view := top.View{Sort: sortBy}
	snap.Rows = view.Rows(snap)
	var err error
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		err = enc.Encode(snap)
	} else {
		w, h := 120, 40
		if f, ok := stdout.(*os.File); ok && isTerminal(f) {
			if ws, e := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); e == nil && ws.Col > 0 {
				w, h = int(ws.Col), int(ws.Row)
			}
		}
		view.NoSelection = true
		_, err = io.WriteString(stdout, top.Render(snap, &view, &top.Screen{Width: w, Height: h})+"\n")
	}
	if err != nil {
		return fmt.Errorf("writing the snapshot: %w", err)
	}
	return nil
}

// topHeadless does top's work without a screen until SIGINT or SIGTERM,
// then prints the summary as -o json does (make bench reads it).
func topHeadless(ctx context.Context, o *topOptions, s *topSession, started time.Time, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var view top.View
	s.publish = func(x *top.Snapshot) {
		_ = top.Render(x, &view, &top.Screen{Width: 120, Height: 40, Loc: time.UTC})
	}
	runErr := s.t.Run(ctx, s)
	st := s.corr.Stats()
	sum := output.NewSummary(st)
	sum.Duration = time.Since(started)
	sum.LostEvents = s.t.LostEvents()
	sum.RingRecords = s.t.Records()
	sum.RecursionMisses = s.t.RecursionMisses()
	sum.DecodeErrors = s.t.DecodeErrors()
	out := output.NewJSON(stdout, output.Options{})
	err := out.Summary(sum)
	if e := out.Flush(); err == nil {
		err = e
	}
	if runErr != nil {
		return runErr
	}
	return err
}

// topScreen runs the full-screen view until q, Ctrl-C, SIGINT, SIGTERM or
// SIGHUP (the terminal closed), and gives the terminal back as it was,
// also if the tracing goroutine panics.
func topScreen(ctx context.Context, s *topSession, group top.GroupBy, sortBy int, resolver *containers.Resolver) error {
	sc := top.Screen{Palette: screenPalette(), Output: output.Options{Container: resolver.Lookup}}
	ui := top.NewUI(top.View{Sort: sortBy}, group, sc, func(g top.GroupBy) { s.want.Store(uint32(g)) })
	p := tea.NewProgram(ui, tea.WithAltScreen(), tea.WithContext(ctx))
	forwardSnapshots(ctx, s, p)
	defer quitOnHangup(ctx, p)()

	tctx, stopTracing := context.WithCancel(ctx)
	traced := traceForScreen(tctx, s, p)
	_, uiErr := p.Run()
	stopTracing()
	res := <-traced
	if res.panic != "" {
		fmt.Fprintf(os.Stderr, "tcptrace: panic while tracing: %s", res.panic)
		return fmt.Errorf("tcptrace top stopped on an internal error (above); please report it")
	}
	if res.err != nil {
		return res.err
	}
	if uiErr != nil && !errors.Is(uiErr, tea.ErrProgramKilled) && !errors.Is(uiErr, tea.ErrInterrupted) && ctx.Err() == nil {
		return fmt.Errorf("drawing the screen: %w", uiErr)
	}
	return nil
}

// forwardSnapshots hands the session's snapshots to the screen through a
// mailbox of one: the tracer never blocks on the screen, and a slow
// screen (a terminal over SSH) skips to the newest.
func forwardSnapshots(ctx context.Context, s *topSession, p *tea.Program) {
	mailbox := make(chan *top.Snapshot, 1)
	s.publish = func(x *top.Snapshot) {
		select {
		case <-mailbox:
		default:
		}
		mailbox <- x
	}
	go func() {
		for {
			select {
			case x := <-mailbox:
				p.Send(top.SnapshotMsg{Snapshot: x})
			case <-ctx.Done():
				return
			}
		}
	}()
}

// quitOnHangup ends the program when the terminal goes away (SIGHUP);
// Bubble Tea itself handles SIGINT and SIGTERM.
func quitOnHangup(ctx context.Context, p *tea.Program) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case <-hup:
			p.Quit()
		case <-ctx.Done():
		case <-done:
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

type traceResult struct {
	err   error
	panic string // with its stack
}

// traceForScreen traces until ctx ends. If tracing fails the program is
// told to quit; if it panics, the program is killed first, which gives
// the terminal back, so that the report can be read.
func traceForScreen(ctx context.Context, s *topSession, p *tea.Program) <-chan traceResult {
	traced := make(chan traceResult, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.Kill()
				traced <- traceResult{panic: fmt.Sprintf("%v\n%s", r, debug.Stack())}
			}
		}()
		err := s.t.Run(ctx, s)
		if err != nil {
			p.Quit()
		}
		traced <- traceResult{err: err}
	}()
	return traced
}

// screenPalette colours the screen, only on a terminal that has colours
// and when NO_COLOR (https://no-color.org) is not set.
func screenPalette() top.Palette {
	r := lipgloss.NewRenderer(os.Stdout)
	if _, noColor := os.LookupEnv("NO_COLOR"); noColor || r.ColorProfile() == termenv.Ascii {
		return top.Palette{}
	}
	return palette(r)
}

func palette(r *lipgloss.Renderer) top.Palette {
	style := func(st lipgloss.Style) func(string) string { return func(s string) string { return st.Render(s) } }
	return top.Palette{
		Title:    style(r.NewStyle().Bold(true)),
		Heading:  style(r.NewStyle().Bold(true).Underline(true)),
		Selected: style(r.NewStyle().Reverse(true)),
		Bad:      style(r.NewStyle().Foreground(lipgloss.Color("9"))),
		Dim:      style(r.NewStyle().Faint(true)),
	}
}
