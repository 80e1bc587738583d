// Package tracer loads tcptrace's BPF programs, attaches them to the TCP
// tracepoints and reads their events from the ring buffer. The correlation of
// events into connections lives in the pure-Go package timeline.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// MaxPorts is how many --port filters the kernel side holds.
const MaxPorts = 8

// Config selects what is traced. Filters are applied in the kernel: what
// they drop never reaches user space.
type Config struct {
	Ports  []uint16 // local or remote port; empty: all
	PID    uint32   // owning process; 0: all
	Comm   string   // owning process name; empty: all
	Family int      // 4 or 6; 0: both
	NetNS  uint32   // network namespace inode; 0: all
	Cgroup uint64   // cgroup v2 id (the cgroup directory's inode); 0: all
	// CgroupSet: only the cgroups given to SetCgroups (--container, --pod).
	CgroupSet bool

	// NetNSPath is the namespace file whose TCP tables the socket scans
	// walk (they see one namespace at a time); empty: tcptrace's own.
	NetNSPath string

	// RingBytes is the ring buffer size, a power of two between
	// RingBytesMin and RingBytesMax; 0 means RingBytesDefault.
	RingBytes int
	// WakeupBytes: the reader is woken once this much is queued, and
	// otherwise polls every PollInterval. 0 wakes it for every event.
	WakeupBytes int
	// PollInterval bounds how long an event may wait in the ring buffer
	// and how often Handler.Tick runs; 0 means 100 ms.
	PollInterval time.Duration

	// SendAtOnce sends every event of a socket at once, as a record of one
	// entry (--events prints them so). By default the kernel queues a
	// socket's events in its storage and sends them as one record when it
	// closes.
	SendAtOnce bool
	// StuckAfter is how long a connection may hold SYN_SENT, SYN_RECV,
	// CLOSE_WAIT or FIN_WAIT2 before it is alerted on (0: never). Queued
	// events of connections held that long are sent in time for it.
	StuckAfter time.Duration
	// OwnerIO also learns owners at every send() and recv(): exact for a
	// socket handed between processes, at a cost on every I/O of the host.
	OwnerIO bool
}

// Handler receives what the tracer reads.
type Handler interface {
	// Event is called for each event; e is reused after the call.
	Event(e *timeline.Event)
	// Tick is called at least every PollInterval with the current time.
	Tick(now time.Time)
	// Lost is called when the kernel reports n more events it could not
	// put in the ring buffer. Recursion misses, which LostEvents also
	// counts, cost a syscall per program to read: the caller polls them
	// (RecursionMisses) as often as it sees fit.
	Lost(n uint64)
}

// Tracer owns the loaded programs, their links and the ring buffer reader.
type Tracer struct {
	cfg     Config
	kernel  *Kernel
	coll    *ebpf.Collection
	links   []link.Link
	reader  *ringbuf.Reader
	decoder Decoder

	ns        *nsThread // lives in the --netns PATH namespace, for scans
	nets      *netNSSet // or else every namespace (netns.go)
	scanErr   error     // why scans can't run, if they can't
	tcpIter   *link.Iter
	fileIter  *link.Iter
	flushIter *link.Iter // nil when events are not queued
	// flushEvery grows with the cost of a flush scan (flushStuck).
	flushEvery time.Duration
	lastFlush  time.Time

	lost      uint64 // last value read from the kernel
	decodeErr uint64
	records   uint64 // ring-buffer and flush-scan records read

	acceptAttached bool // an accept() exit program is attached
	// scanStates: sockets by state in the last Scan (scanstates.go).
	scanStates scanStates

	closeOnce sync.Once
	closeErr  error
}

// New loads and attaches the programs. Its errors are meant for the user.
func New(cfg Config) (*Tracer, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	kernel, err := ProbeKernel()
	if err != nil {
		return nil, err
	}
	if len(kernel.MissingTracepoints) > 0 {
		return nil, fmt.Errorf("this kernel lacks the tracepoint(s) %s that tcptrace attaches to; %s",
			strings.Join(kernel.MissingTracepoints, ", "), adviceTracepoints)
	}

	// Locked memory is not charged to RLIMIT_MEMLOCK since Linux 5.11
	// (memcg accounting), and without CAP_SYS_RESOURCE it can't be raised.
	_ = rlimit.RemoveMemlock()

	spec, err := newSpec(kernel, &cfg)
	if err != nil {
		return nil, err
	}
	t := &Tracer{cfg: cfg, kernel: kernel}
	t.decoder.RSTReasons = kernel.RSTReasons
	t.decoder.DropReasons = kernel.DropReasons
	t.decoder.clock.hz = kernelHZ()
	if err := setDropReasons(spec, kernel); err != nil {
		return nil, err
	}
	t.decoder.MonoToUnix = monoToUnix()
	if err := t.openNetNS(); err != nil {
		t.Close()
		return nil, err
	}
	// The queues of open sockets are sent by scans of the namespaces they
	// see: every namespace, when tcptrace may enter them; else sockets of
	// the others send each event on their own.
	if err := spec.Variables["queue_netns"].Set(t.queueNetNS()); err != nil {
		t.Close()
		return nil, fmt.Errorf("setting queue_netns: %w", err)
	}
	if err := t.load(spec); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// checkConfig rejects what can't be traced and fills in the defaults.
func checkConfig(cfg *Config) error {
	if len(cfg.Ports) > MaxPorts {
		return fmt.Errorf("at most %d ports can be filtered, got %d", MaxPorts, len(cfg.Ports))
	}
	if cfg.Family != 0 && cfg.Family != 4 && cfg.Family != 6 {
		return fmt.Errorf("address family must be 4 or 6, got %d", cfg.Family)
	}
	if len(cfg.Comm) > 15 {
		// The kernel keeps 15 bytes of a process name (TASK_COMM_LEN - 1).
		cfg.Comm = cfg.Comm[:15]
	}
	if cfg.RingBytes == 0 {
		cfg.RingBytes = RingBytesDefault
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if !ValidRingBytes(cfg.RingBytes) {
		return RingBytesError("ring buffer size", cfg.RingBytes)
	}
	return nil
}

// newSpec reads the embedded BPF object and keeps of it what this kernel
// takes and cfg asks for, with cfg's filters and ring buffer size.
func newSpec(kernel *Kernel, cfg *Config) (*ebpf.CollectionSpec, error) {
	spec, err := loadTcptrace()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	// A tp_btf program may not read an argument its tracepoint lacks, nor
	// attach to a tracepoint that is not there: keep what this kernel takes.
	for name := range kernel.skip {
		delete(spec.Programs, name)
	}
	for _, p := range programs {
		if p.ownerIO && !cfg.OwnerIO {
			delete(spec.Programs, p.name)
		} else if p.ownerIO && kernel.skip[p.name] {
			kernel.Degraded = append(kernel.Degraded, p.tracepoint+": "+p.lacking)
		}
	}
	if err := setFilters(spec, cfg); err != nil {
		return nil, err
	}
	if specHook != nil {
		specHook(spec)
	}
	spec.Maps[tcptraceMapEvents].MaxEntries = uint32(cfg.RingBytes)
	return spec, nil
}

// setDropReasons gives the programs this kernel's values of the drop
// reasons they look for.
func setDropReasons(spec *ebpf.CollectionSpec, kernel *Kernel) error {
	for name, v := range map[string]uint32{
		"drop_reason_consumed": kernel.dropReason("SKB_CONSUMED", 1),
		"drop_ignored_a":       kernel.dropReason(IgnoredDrops[0], 0xffffffff),
		"drop_ignored_b":       kernel.dropReason(IgnoredDrops[1], 0xffffffff),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// specHook, when set (by tests), changes the object before it loads.
var specHook func(*ebpf.CollectionSpec)

// load loads the programs, attaches them and opens the ring buffer; on
// error the caller closes what was done.
func (t *Tracer) load(spec *ebpf.CollectionSpec) error {
	var err error
	for {
		t.coll, err = ebpf.NewCollection(spec)
		if err == nil {
			break
		}
		var verr *ebpf.VerifierError
		if !errors.As(err, &verr) {
			return explainPermission(fmt.Errorf("loading BPF programs: %w", err))
		}
		p, ok := refusedOptional(err, spec)
		if !ok {
			return fmt.Errorf("the kernel's verifier rejected a tcptrace program (a bug, or a kernel tcptrace does not support): %w", err)
		}
		if p.name == tcptraceProgFlushQueues {
			// Queued events would never leave a socket that stays open.
			if err := spec.Variables["queue_events"].Set(uint32(0)); err != nil {
				return fmt.Errorf("setting queue_events: %w", err)
			}
		}
		// Verifiers tighten from one kernel to the next (this machine's
		// 6.18.44 refuses a pointer walk that older kernels took). A program
		// that only adds detail is not worth failing for: go on without
		// it, and say so.
		delete(spec.Programs, p.name)
		lost := fmt.Sprintf("%s: %s (this kernel's verifier refused it: %v)", p.tracepoint, p.lacking, err)
		t.kernel.Refused = append(t.kernel.Refused, lost)
		t.kernel.Degraded = append(t.kernel.Degraded, lost)
	}
	for _, p := range programs {
		prog := t.coll.Programs[p.name]
		if prog == nil {
			continue // skipped on this kernel
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return explainPermission(fmt.Errorf("attaching to tracepoint %s: %w", p.tracepoint, err))
		}
		t.links = append(t.links, l)
	}
	t.attachAccept()
	if err := t.attachIters(); err != nil {
		return err
	}
	if err := t.attachFlush(); err != nil {
		return err
	}
	t.reader, err = ringbuf.NewReader(t.coll.Maps[tcptraceMapEvents])
	if err != nil {
		return fmt.Errorf("opening the ring buffer: %w", err)
	}
	return nil
}

// refusedOptional finds the optional program a load error is about:
// cilium/ebpf names it first ("program NAME: ...").
func refusedOptional(err error, spec *ebpf.CollectionSpec) (program, bool) {
	msg := err.Error()
	for _, p := range slices.Concat(programs, iterPrograms, acceptPrograms, []program{flushProgram}) {
		if !p.required && spec.Programs[p.name] != nil && strings.HasPrefix(msg, "program "+p.name+":") {
			return p, true
		}
	}
	return program{}, false
}

func setFilters(spec *ebpf.CollectionSpec, cfg *Config) error {
	var ports [MaxPorts]uint16
	copy(ports[:], cfg.Ports)
	var comm [16]byte
	copy(comm[:], cfg.Comm)
	family := uint16(0)
	switch cfg.Family {
	case 4:
		family = afInet
	case 6:
		family = afInet6
	}
	commSet := uint32(0)
	if cfg.Comm != "" {
		commSet = 1
	}
	queue := uint32(1)
	if cfg.SendAtOnce {
		queue = 0
	}
	set := map[string]any{
		"filter_netns":    cfg.NetNS,
		"filter_pid":      cfg.PID,
		"filter_family":   family,
		"filter_nports":   uint32(len(cfg.Ports)),
		"filter_ports":    ports,
		"filter_comm_set": commSet,
		"filter_comm":     comm,
		"filter_cgroup":   cfg.Cgroup,
		"wakeup_bytes":    uint64(cfg.WakeupBytes),
		"queue_events":    queue,
	}
	set["filter_cgroup_map"] = cgroupSetFlag(cfg)
	for name, value := range set {
		v, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := v.Set(value); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// monoToUnix is the offset from CLOCK_MONOTONIC (bpf_ktime_get_ns) to Unix time.
func monoToUnix() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}

// Kernel reports what the running kernel offers.
func (t *Tracer) Kernel() *Kernel { return t.kernel }

// Run reads events until ctx is done, then detaches the programs, drains
// what is left in the ring buffer and returns.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	var rec ringbuf.Record
	var ev timeline.Event
	n := 0
	t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
	for {
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			t.handle(h, rec.RawSample, &ev)
			// Under constant load the buffer may never drain; tick anyway.
			if n++; n&4095 == 0 {
				t.tick(h)
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
		t.tick(h)
		if ctx.Err() != nil {
			return t.drain(h, &rec, &ev)
		}
		t.reader.SetDeadline(time.Now().Add(t.cfg.PollInterval))
	}
}

// handle decodes one record for h.
func (t *Tracer) handle(h Handler, sample []byte, ev *timeline.Event) {
	t.records++
	if t.decoder.Decode(sample, ev, h.Event) != nil {
		t.decodeErr++
	}
}

// drain sends what the kernel still holds, detaches the programs so no new
// events come, and reads the rest. The queues of open sockets go first,
// while the programs still run: a socket that went away after the
// programs were detached would take its queue with it. Once queueing is
// stopped, a socket's next event takes its queue along in the ring buffer;
// the flush scan sends the queues of the others. Each queue is sent once
// (claimed with cmpxchg), after what the ring buffer held of its socket
// before, which is read first.
func (t *Tracer) drain(h Handler, rec *ringbuf.Record, ev *timeline.Event) error {
	var err error
	if t.flushIter != nil {
		if err = t.coll.Variables["queues_stopped"].Set(uint32(1)); err == nil {
			t.readAvailable(h, rec, ev)
			err = t.flushQueues(h, ev, true, 0)
		}
	}
	err = errors.Join(err, t.detach())
	t.readAvailable(h, rec, ev)
	t.tick(h)
	return err
}

// readAvailable handles what the ring buffer holds now.
func (t *Tracer) readAvailable(h Handler, rec *ringbuf.Record, ev *timeline.Event) {
	t.reader.SetDeadline(time.Now())
	for t.reader.ReadInto(rec) == nil {
		t.handle(h, rec.RawSample, ev)
	}
}

func (t *Tracer) tick(h Handler) {
	t.flushStuck(h)
	if lost := t.ringLost(); lost > t.lost {
		h.Lost(lost - t.lost)
		t.lost = lost
	}
	h.Tick(time.Now())
}

// LostEvents is how many events the kernel could not deliver since
// loading: those it could not put in the ring buffer, and those of a
// program it skipped because another BPF program ran on the same CPU
// (RecursionMisses; a softirq landing in a program, under load). A lost
// CLOSE costs more than a step: the socket's queued events go with it.
func (t *Tracer) LostEvents() uint64 { return t.ringLost() + t.RecursionMisses() }

// ringLost is how many events the kernel could not put in the ring buffer.
func (t *Tracer) ringLost() uint64 {
	var lost uint64
	if v := t.coll.Variables["lost_events"]; v != nil {
		_ = v.Get(&lost)
	}
	return lost
}

// Records is how many records the kernel sent: events sent at once (a
// record of one entry each), and sockets' queues (a record each).
func (t *Tracer) Records() uint64 { return t.records }

// DecodeErrors is how many samples could not be decoded.
func (t *Tracer) DecodeErrors() uint64 { return t.decodeErr }

// DropsTraced: the kernel reports TCP packet drops with their reason (a
// kfree_skb program is attached).
func (t *Tracer) DropsTraced() bool {
	return t.coll.Programs[tcptraceProgHandleKfreeSkb] != nil || t.coll.Programs[tcptraceProgHandleKfreeSkbNorxsk] != nil
}

// RetransmitsFailed is how many retransmission attempts sent nothing
// (Linux >= 6.17 reports them): not counted as retransmissions.
func (t *Tracer) RetransmitsFailed() uint64 {
	var n uint64
	if v := t.coll.Variables["retransmit_failed"]; v != nil {
		_ = v.Get(&n)
	}
	return n
}

// RecursionMisses sums, over all programs, the times the kernel skipped a
// program because another BPF program was running on the same CPU.
func (t *Tracer) RecursionMisses() uint64 {
	var total uint64
	for _, p := range t.coll.Programs {
		if st, err := p.Stats(); err == nil {
			total += st.RecursionMisses
		}
	}
	return total
}

// detach closes the links all at once: the kernel waits for an RCU grace
// period as it unregisters each classic tracepoint's perf event (about
// 70 ms each here), and the syscall programs have eight of them; closed one
// after another they made a stop 0.6 s longer.
func (t *Tracer) detach() error {
	errs := make([]error, len(t.links))
	var wg sync.WaitGroup
	for i, l := range t.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Close()
		}()
	}
	wg.Wait()
	t.links = nil
	return errors.Join(errs...)
}

// Close detaches and unloads everything. It is safe to call more than once.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		errs := []error{t.detach()}
		for _, l := range []*link.Iter{t.tcpIter, t.fileIter, t.flushIter} {
			if l != nil {
				errs = append(errs, l.Close())
			}
		}
		t.closeNetNS()
		if t.reader != nil {
			errs = append(errs, t.reader.Close())
		}
		if t.coll != nil {
			t.coll.Close()
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}
