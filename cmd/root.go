// Package cmd is tcptrace's command line.
package cmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/metrics"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // could not trace: privileges, kernel, I/O
	exitUsage = 2 // bad flags
)

// usageError marks errors in what the user asked for.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// ringSizeHelp is --ring-size's help, for tcptrace and tcptrace top.
var ringSizeHelp = fmt.Sprintf("BPF ring buffer size in bytes (a power of two, at most %d)", tracer.RingBytesMax)

// options are the parsed flags.
type options struct {
	output         string
	events         bool
	ports          []uint
	pid            int
	comm           string
	ipv4, ipv6     bool
	netns          string
	duration       time.Duration
	count          int
	readyFile      string
	maxConnections int
	ringSize       int
	stuckAfter     time.Duration
	cgroup         string
	onlyAnomalies  bool
	compact        bool
	cpuProfile     string
	ownerIO        bool
	ladder, ascii  bool
	absoluteSeq    bool

	metrics          string // --metrics ADDR (cmd/metrics.go)
	metricsLabels    []string
	metricsMaxSeries int
	metricsSeriesTTL time.Duration
	ctr              containerOptions
	pairWait         time.Duration
}

// Version is set at build time with -ldflags "-X .../cmd.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newRootCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "tcptrace",
		Short: "Show what TCP is doing on this host, connection by connection",
		Long: `tcptrace attaches eBPF programs to the kernel's TCP tracepoints and shows
the life of every TCP connection when it ends: handshake, SYN retries,
retransmissions, resets, how it closed and who closed first.

When the host is the cause it says so, with the kernel's evidence: a full
accept queue, accept() at the fd limit, no free local port, a port in use,
packets a firewall rule dropped (with the kernel's drop reason).

What it costs: programs run per connection event, never per byte or packet;
besides, one runs per connect(), bind(), listen() and accept() call of every
process (to report those that fail), and one per dropped packet (to say why).

It traces until Ctrl-C (or SIGTERM, --duration, --count), then prints the
connections still open and a summary. Needs root, or CAP_BPF and CAP_PERFMON.`,
		Example: `  sudo tcptrace
  sudo tcptrace --port 443 --port 8080
  sudo tcptrace -o json | jq 'select(.outcome != "closed")'
  sudo tcptrace --netns /run/netns/blue --events`,
		Version: version(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("tcptrace takes no arguments, got %q (filters are flags: see --help)", args)
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.tracerConfig()
			if err != nil {
				return err
			}
			return run(cmd.Context(), &o, cfg, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags())
	cmd.AddCommand(newCheckCommand())
	cmd.AddCommand(newTopCommand())
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.SetVersionTemplate("tcptrace {{.Version}}\n")
	return cmd
}

// addFlags defines tcptrace's flags.
func (o *options) addFlags(f *pflag.FlagSet) {
	o.addOutputFlags(f)
	o.addFilterFlags(f)
	o.addTracingFlags(f)
	o.addMetricsFlags(f)
}

// addOutputFlags defines what is printed, and how.
func (o *options) addOutputFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json, or none (with --metrics)")
	f.BoolVar(&o.events, "events", false, "also print every kernel event as it happens, and the end of each TIME_WAIT")
	f.BoolVar(&o.onlyAnomalies, "only-anomalies", false,
		"print only connections that did not close cleanly or needed handshake retries, and alerts")
	f.BoolVar(&o.compact, "compact", false,
		"with -o json: leave out members that are null, false, 0 or empty (an absent member reads as its empty value); for fleets that ship every line")
	f.BoolVar(&o.ladder, "ladder", false,
		"draw each connection as a TCP ladder diagram: this host and the peer side by side, segments between them, time going down")
	f.BoolVar(&o.ascii, "ascii", false, "draw --ladder diagrams in plain ASCII instead of box-drawing characters")
	f.BoolVar(&o.absoluteSeq, "absolute-seq", false,
		"write --ladder sequence numbers as the wire carries them, like tcpdump -S (default: relative to each side's ISN)")
	f.DurationVar(&o.pairWait, "pair-wait", time.Second,
		"when both ends of a connection are on this host, hold a record this long at most for its peer's, to print them together (0: no pairing)")
}

// addFilterFlags defines the filters: which connections are traced.
func (o *options) addFilterFlags(f *pflag.FlagSet) {
	f.UintSliceVar(&o.ports, "port", nil, fmt.Sprintf("only connections with this local or remote port (repeatable, up to %d)", tracer.MaxPorts))
	f.IntVar(&o.pid, "pid", 0, "only connections owned by this process ID")
	f.StringVar(&o.comm, "comm", "", "only connections owned by processes with this name")
	f.BoolVarP(&o.ipv4, "ipv4", "4", false, "only IPv4")
	f.BoolVarP(&o.ipv6, "ipv6", "6", false, "only IPv6")
	f.StringVar(&o.netns, "netns", "", "only this network namespace: an inode number, or a path such as /proc/PID/ns/net or /run/netns/NAME")
	f.StringVar(&o.cgroup, "cgroup", "", "only sockets of this cgroup v2: its directory, or its path in the hierarchy (/system.slice/nginx.service)")
	f.StringArrayVar(&o.ctr.containers, "container", nil,
		"only sockets of this container: its name, or an id (prefix); repeatable. Names need the runtime's API")
	f.StringArrayVar(&o.ctr.pods, "pod", nil,
		"only sockets of this Kubernetes pod: NAME, NAMESPACE/NAME or its UID; repeatable. Names need the CRI API")
	f.StringArrayVar(&o.ctr.runtimeEndpoints, "runtime-endpoint", nil,
		"container runtime API socket to name containers with, RUNTIME=PATH (docker, podman, containerd, cri-o); repeatable; replaces the usual sockets")
}

// addTracingFlags defines how and how long tracing runs.
func (o *options) addTracingFlags(f *pflag.FlagSet) {
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (e.g. 30s, 5m)")
	f.IntVar(&o.count, "count", 0, "stop after this many connection records")
	f.StringVar(&o.readyFile, "ready-file", "", "create this file once the probes are attached")
	f.IntVar(&o.maxConnections, "max-connections", timeline.DefaultConfig().MaxConnections,
		"most connections tracked at once; beyond it the oldest is reported early and counted as evicted")
	f.IntVar(&o.ringSize, "ring-size", tracer.RingBytesDefault, ringSizeHelp)
	f.DurationVar(&o.stuckAfter, "stuck-after", 30*time.Second,
		"alert on connections stuck this long in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or SYN_RECV (0: never)")
	f.BoolVar(&o.ownerIO, "owner-io", false,
		"also learn each socket's owner at every send() and recv(): exact when a socket passes between processes, "+
			"but it runs a BPF program on every I/O of every socket on the host (about 200 ns each, whatever the filters); "+
			"by default owners are taken at connect, listen, accept and close only")
	// For developers measuring the loader under load (make bench): the
	// profile covers tracing, not start-up.
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the tracing to this file")
	_ = f.MarkHidden("cpu-profile")
}

// addMetricsFlags defines the Prometheus metrics.
func (o *options) addMetricsFlags(f *pflag.FlagSet) {
	f.StringVar(&o.metrics, "metrics", "",
		"serve Prometheus metrics at http://ADDR/metrics (and /healthz) while tracing: host:port, or :9464 for all addresses")
	f.StringSliceVar(&o.metricsLabels, "metrics-labels", nil,
		"extra metric labels, comma-separated: "+strings.Join(metrics.ExtraLabelNames(), ", ")+" (each multiplies the series)")
	f.IntVar(&o.metricsMaxSeries, "metrics-max-series", 10000,
		"most label sets per metric family; beyond it new ones are folded into series labelled ~other")
	f.DurationVar(&o.metricsSeriesTTL, "metrics-series-ttl", 10*time.Minute,
		"delete a metric series not updated for this long")
}

// tracerConfig validates the flags and turns them into the kernel filters.
func (o *options) tracerConfig() (tracer.Config, error) {
	var cfg tracer.Config
	switch o.output {
	case "text", "json", "none":
	default:
		return cfg, usagef("--output must be text or json (or none, with --metrics), got %q", o.output)
	}
	if err := o.checkMetricsFlags(); err != nil {
		return cfg, err
	}
	if err := o.checkLadder(); err != nil {
		return cfg, err
	}
	if err := o.filters(&cfg); err != nil {
		return cfg, err
	}
	if err := o.checkLimits(); err != nil {
		return cfg, err
	}
	cfg.RingBytes = o.ringSize
	// --events prints every event as it happens: the kernel sends each on
	// its own instead of queueing a socket's events until it closes.
	cfg.SendAtOnce = o.events
	cfg.StuckAfter = o.stuckAfter
	cfg.OwnerIO = o.ownerIO
	// Under load, wake the reader once an eighth of the buffer is queued
	// instead of at every event; it also polls every PollInterval.
	cfg.WakeupBytes = o.ringSize / 8
	return cfg, nil
}

// filters validates the filter flags and sets them in cfg.
func (o *options) filters(cfg *tracer.Config) error {
	if len(o.ports) > tracer.MaxPorts {
		return usagef("--port can be given at most %d times, got %d", tracer.MaxPorts, len(o.ports))
	}
	for _, p := range o.ports {
		if p < 1 || p > 65535 {
			return usagef("--port must be between 1 and 65535, got %d", p)
		}
		cfg.Ports = append(cfg.Ports, uint16(p))
	}
	if o.pid < 0 {
		return usagef("--pid must be a positive process ID, got %d", o.pid)
	}
	cfg.PID = uint32(o.pid)
	if len(o.comm) > 15 {
		return usagef("--comm: the kernel keeps only the first 15 bytes of a process name; use %q", o.comm[:15])
	}
	cfg.Comm = o.comm
	switch {
	case o.ipv4 && o.ipv6:
		return usagef("-4/--ipv4 and -6/--ipv6 exclude each other; give neither to see both")
	case o.ipv4:
		cfg.Family = 4
	case o.ipv6:
		cfg.Family = 6
	}
	if o.netns != "" {
		ino, path, err := parseNetNS(o.netns)
		if err != nil {
			return err
		}
		cfg.NetNS, cfg.NetNSPath = ino, path
	}
	if o.cgroup != "" {
		id, err := tracer.CgroupID(o.cgroup)
		if err != nil {
			return usagef("--cgroup: %v", err)
		}
		cfg.Cgroup = id
	}
	return o.containerConfig(cfg)
}

// checkLimits validates the flags that bound the tracing: its length and
// the sizes of its tables.
func (o *options) checkLimits() error {
	if o.stuckAfter < 0 {
		return usagef("--stuck-after must be positive (or 0 to disable alerts), got %s", o.stuckAfter)
	}
	if o.pairWait < 0 || o.pairWait > maxPairWait {
		return usagef("--pair-wait must be between 0 (no pairing) and %s, got %s", time.Duration(maxPairWait), o.pairWait)
	}
	if o.duration < 0 {
		return usagef("--duration must be positive, got %s", o.duration)
	}
	if o.count < 0 {
		return usagef("--count must be positive, got %d", o.count)
	}
	if o.maxConnections < 1 {
		return usagef("--max-connections must be at least 1, got %d", o.maxConnections)
	}
	if !tracer.ValidRingBytes(o.ringSize) {
		return usageError{tracer.RingBytesError("--ring-size", o.ringSize)}
	}
	return nil
}

// nsfsMagic is NSFS_MAGIC: namespace files live on the nsfs filesystem.
const nsfsMagic = 0x6e736673

// parseNetNS accepts an inode number or a namespace file's path, and
// returns the inode and a path to the namespace ("" if none was found: the
// socket scans then can't enter it).
func parseNetNS(s string) (uint32, string, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n == 0 {
			return 0, "", usagef("--netns: 0 is not a namespace inode")
		}
		return uint32(n), findNetNS(uint32(n)), nil
	}
	var st unix.Stat_t
	if err := unix.Stat(s, &st); err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			// Not a usage error: another user's /proc/PID/ns/net needs
			// CAP_SYS_PTRACE.
			return 0, "", fmt.Errorf("--netns %s: %w (another user's /proc/PID/ns/net needs CAP_SYS_PTRACE: run as root, or give the namespace's inode number)", s, err)
		}
		return 0, "", usagef("--netns %s: %v (give an inode number, /proc/PID/ns/net or /run/netns/NAME)", s, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(s, &fs); err != nil || fs.Type != nsfsMagic {
		return 0, "", usagef("--netns %s: not a namespace file (give /proc/PID/ns/net or /run/netns/NAME)", s)
	}
	return uint32(st.Ino), s, nil
}

// findNetNS finds a path to the namespace with this inode: a process or
// thread in it (/proc/PID/task/TID/ns/net), or a name under /run/netns.
func findNetNS(ino uint32) string {
	var candidates []string
	if names, err := filepath.Glob("/run/netns/*"); err == nil {
		candidates = append(candidates, names...)
	}
	if tasks, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net"); err == nil {
		candidates = append(candidates, tasks...)
	}
	for _, p := range candidates {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && uint32(st.Ino) == ino {
			return p
		}
	}
	return ""
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	cmd := newRootCommand()
	err := cmd.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "Run 'tcptrace --help' for usage.")
		return exitUsage
	}
	return exitError
}
