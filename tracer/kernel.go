package tracer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// vmlinuxBTF is where the kernel exposes its own type information.
const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// program is one tp_btf program and the raw tracepoint it attaches to.
type program struct {
	name       string // in the BPF object
	tracepoint string
	// required: tcptrace can't run without it. An optional one has lacking.
	required bool
	// lacking, for an optional program, says what tcptrace can't do
	// without it.
	lacking string
	// ownerIO: on a per-I/O tracepoint, loaded only with Config.OwnerIO.
	ownerIO bool
}

// programs lists the tracepoint programs. tcp_send_reset has two variants;
// the loader keeps the one the kernel's prototype allows.
var programs = []program{
	{name: tcptraceProgHandleSetState, tracepoint: "inet_sock_set_state", required: true},
	{name: tcptraceProgHandleRetransmit, tracepoint: "tcp_retransmit_skb", required: true},
	{name: tcptraceProgHandleRetransmitErr, tracepoint: "tcp_retransmit_skb", required: true},
	{name: tcptraceProgHandleRetransmitSynack, tracepoint: "tcp_retransmit_synack", required: true},
	{name: tcptraceProgHandleSendReset, tracepoint: "tcp_send_reset", required: true},
	{name: tcptraceProgHandleSendResetNoreason, tracepoint: "tcp_send_reset", required: true},
	{name: tcptraceProgHandleReceiveReset, tracepoint: "tcp_receive_reset", required: true},
	{name: tcptraceProgHandleErrorReport, tracepoint: "inet_sk_error_report", lacking: "the errors reported to applications (Linux >= " + KernelAllTracepoints + ")"},
	// Once per dropped packet (any protocol; TCP ones become events): a
	// cost that scales with drops, not traffic (bpf/drops.h).
	{name: tcptraceProgHandleKfreeSkb, tracepoint: "kfree_skb", lacking: dropsLacking},
	{name: tcptraceProgHandleKfreeSkbNorxsk, tracepoint: "kfree_skb", lacking: dropsLacking},
	// These two run on every send() and recv() of every socket on the host,
	// whatever the filters: a cost per I/O, not per connection. Only with
	// --owner-io, for the rare owner that neither accept() nor close() shows.
	{name: tcptraceProgHandleSendLength, tracepoint: "sock_send_length", lacking: "--owner-io: owners learned at every send() (Linux >= 6.3)", ownerIO: true},
	{name: tcptraceProgHandleRecvLength, tracepoint: "sock_recv_length", lacking: "--owner-io: owners learned at every recv() (Linux >= 6.3)", ownerIO: true},
}

// acceptPrograms are classic tracepoints on the exits of accept(),
// accept4(), connect(), bind() and listen(), as no tp_btf tracepoint fires
// there: once per accepted connection, in the accepting process, the owner
// a prefork server's worker is; and the calls that fail, with the
// arguments they were entered with (bpf/syscalls.h). A cost per call.
var acceptPrograms = []program{
	{name: tcptraceProgHandleAccept4, tracepoint: "sys_exit_accept4",
		lacking: "owners of accepted sockets taken at accept(): they are taken at close() instead (a prefork server's RST-closed connections keep the listener's owner); " + syscallsLacking},
	{name: tcptraceProgHandleAccept, tracepoint: "sys_exit_accept",
		lacking: "owners of sockets taken by accept() (not accept4()): they are taken at close() instead"},
	{name: tcptraceProgHandleExitConnect, tracepoint: "sys_exit_connect", lacking: syscallsLacking},
	{name: tcptraceProgHandleExitBind, tracepoint: "sys_exit_bind", lacking: syscallsLacking},
	{name: tcptraceProgHandleExitListen, tracepoint: "sys_exit_listen", lacking: syscallsLacking},
}

// What goes missing without the kfree_skb and syscall programs.
const (
	dropsLacking    = "packet drops with the kernel's reason (skb:kfree_skb with a reason, Linux >= 5.17)"
	syscallsLacking = "the errors of connect(), bind(), listen() and accept() (EADDRNOTAVAIL, EADDRINUSE, EMFILE...; Linux >= " + KernelSyscallArgs + ")"
)

// flushProgram sends the event queues of sockets held in a state that is
// alerted on, and every queue at exit. Without it, events are not queued.
var flushProgram = program{name: tcptraceProgFlushQueues, tracepoint: "iter/tcp (queue flush)",
	lacking: "events queued per socket: each event is sent on its own (about five ring-buffer records more per connection)"}

// iterPrograms are the socket scans. Tracing goes on without them.
var iterPrograms = []program{
	{name: tcptraceProgDumpTcp, tracepoint: "iter/tcp", lacking: "socket scans: connections older than tcptrace, orphaned FIN_WAIT2 sockets followed, TIME_WAIT counts"},
	{name: tcptraceProgDumpOwners, tracepoint: "iter/task_file", lacking: "the owners of connections older than tcptrace"},
}

// Kernel describes what the running kernel offers tcptrace.
type Kernel struct {
	// RSTReason: tcp_send_reset carries enum sk_rst_reason (Linux >= 6.10).
	RSTReason bool
	// RSTReasons names the enum's values, "SK_RST_REASON_" prefix removed.
	RSTReasons []string
	// DropReasons names enum skb_drop_reason's values, "SKB_DROP_REASON_"
	// prefix removed; empty when kfree_skb carries no reason.
	DropReasons []string
	// RetransmitErr: tcp_retransmit_skb says whether the attempt failed
	// (Linux >= 6.17); before, a failed attempt is not traced at all.
	RetransmitErr bool
	// DropSocket: kfree_skb names the socket a dropped packet was for
	// (Linux >= 6.11); before, received packets are matched by 4-tuple.
	DropSocket bool
	// MissingTracepoints lists required tracepoints this kernel lacks.
	MissingTracepoints []string
	// Degraded says what tcptrace can't do on this kernel, and why.
	Degraded []string
	// Refused lists the optional programs this kernel's verifier refused,
	// each with what tcptrace goes without (also in Degraded).
	Refused []string
	// skip lists programs not to load: optional ones whose tracepoint is
	// missing, and the tcp_send_reset variant the kernel can't take.
	skip map[string]bool
}

// ProbeKernel checks privileges, BTF and ring buffer support, then reads the
// kernel's BTF for the tracepoints' prototypes. Its errors say what to do.
func ProbeKernel() (*Kernel, error) {
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	sup := probeSupport()
	if err := sup.err(); err != nil {
		return nil, err
	}
	return newKernel(sup.spec), nil
}

// support is what the kernel offers that tcptrace can't go without, probed
// once for ProbeKernel and RunPreflight alike.
type support struct {
	noBTF   error     // vmlinuxBTF is missing
	spec    *btf.Spec // the kernel's BTF; nil if missing or unreadable
	specErr error     // reading it failed
	ringErr error     // no ring buffer, or probing it failed
}

// Why tcptrace can't run, and what to do: ProbeKernel's errors and
// RunPreflight's problems and advice.
const (
	problemNoBTF         = "this kernel exposes no BTF (" + vmlinuxBTF + " is missing)"
	adviceNoBTF          = "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux >= " + MinKernel + "; most distribution kernels are)"
	problemNoRingBuf     = "this kernel has no BPF ring buffer"
	adviceNoRingBuf      = "tcptrace needs Linux >= " + MinKernel
	adviceTracepoints    = "use Linux >= " + MinKernel + ", which has them all"
	problemNoTracepoint  = "this kernel lacks the tracepoint %s that tcptrace attaches to"
	problemBTFUnreadable = "reading kernel BTF from " + vmlinuxBTF
	problemRingProbe     = "probing BPF ring buffer support"
)

// probeSupport looks for BTF and the BPF ring buffer. Probing the ring
// buffer creates a map, which needs CAP_BPF.
func probeSupport() support {
	var s support
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		s.noBTF = err
	} else if s.spec, err = btf.LoadKernelSpec(); err != nil {
		s.spec, s.specErr = nil, err
	}
	s.ringErr = features.HaveMapType(ebpf.RingBuf)
	return s
}

// ringMissing says the kernel has no ring buffer, rather than that probing
// for it failed.
func (s support) ringMissing() bool { return errors.Is(s.ringErr, ebpf.ErrNotSupported) }

// err is the first thing missing, as ProbeKernel reports it.
func (s support) err() error {
	switch {
	case s.noBTF != nil:
		return errors.New(problemNoBTF + ": " + adviceNoBTF)
	case s.ringMissing():
		return errors.New(problemNoRingBuf + ": " + adviceNoRingBuf)
	case s.ringErr != nil:
		return explainPermission(fmt.Errorf("%s: %w", problemRingProbe, s.ringErr))
	case s.specErr != nil:
		return fmt.Errorf("%s: %w", problemBTFUnreadable, s.specErr)
	}
	return nil
}

// newKernel reads from the kernel's BTF which programs it takes.
func newKernel(spec *btf.Spec) *Kernel {
	k := &Kernel{skip: make(map[string]bool)}
	if proto, err := tracepointProto(spec, "tcp_send_reset"); err == nil {
		// void *__data, sk, skb [, reason]: the reason came in Linux 6.10.
		k.RSTReason = len(proto.Params) >= 4
	}
	if k.RSTReason {
		k.skip[tcptraceProgHandleSendResetNoreason] = true
	} else {
		k.skip[tcptraceProgHandleSendReset] = true
		k.Degraded = append(k.Degraded, degradedRSTReason)
	}
	k.pickVariants(spec)
	for _, p := range programs {
		if _, err := tracepointProto(spec, p.tracepoint); err == nil {
			continue
		}
		if p.required {
			if !slices.Contains(k.MissingTracepoints, p.tracepoint) {
				k.MissingTracepoints = append(k.MissingTracepoints, p.tracepoint)
			}
			continue
		}
		k.skip[p.name] = true
		if !p.ownerIO { // said by New, when asked for
			k.Degraded = append(k.Degraded, p.tracepoint+": "+p.lacking)
		}
	}
	k.RSTReasons = enumNames(spec, "sk_rst_reason", "SK_RST_REASON_")
	if !k.skip[tcptraceProgHandleKfreeSkb] || !k.skip[tcptraceProgHandleKfreeSkbNorxsk] {
		k.DropReasons = enumNames(spec, "skb_drop_reason", "SKB_DROP_REASON_")
	}
	return k
}

// degradedRSTReason is what goes missing before Linux 6.10.
const degradedRSTReason = "RST reasons: tcp_send_reset has no reason argument before Linux 6.10"

// pickVariants keeps, of each tracepoint with variants, the program whose
// arguments this kernel's prototype has (void *__data first).
func (k *Kernel) pickVariants(spec *btf.Spec) {
	params := func(tp string) int {
		proto, err := tracepointProto(spec, tp)
		if err != nil {
			return 0
		}
		return len(proto.Params)
	}
	// sk, skb [, err]: the error came in Linux 6.17.
	k.RetransmitErr = params("tcp_retransmit_skb") >= 4
	if k.RetransmitErr {
		k.skip[tcptraceProgHandleRetransmit] = true
	} else {
		k.skip[tcptraceProgHandleRetransmitErr] = true
	}
	// skb, location [, reason [, rx_sk]]: reason in 5.17, rx_sk in 6.11.
	switch n := params("kfree_skb"); {
	case n >= 5:
		k.DropSocket = true
		k.skip[tcptraceProgHandleKfreeSkbNorxsk] = true
	case n == 4:
		k.skip[tcptraceProgHandleKfreeSkb] = true
	default:
		k.skip[tcptraceProgHandleKfreeSkb] = true
		k.skip[tcptraceProgHandleKfreeSkbNorxsk] = true
		k.Degraded = append(k.Degraded, "kfree_skb: "+dropsLacking)
	}
}

// enumNames reads a kernel enum's names by value, prefix removed; values
// past 1023 are left out.
func enumNames(spec *btf.Spec, enum, prefix string) []string {
	var e *btf.Enum
	if err := spec.TypeByName(enum, &e); err != nil {
		return nil
	}
	var names []string
	for _, v := range e.Values {
		if v.Value >= 1024 {
			continue
		}
		for uint64(len(names)) <= v.Value {
			names = append(names, "")
		}
		names[v.Value] = strings.TrimPrefix(v.Name, prefix)
	}
	return names
}

// dropReason is the value of a drop reason's name, or def.
func (k *Kernel) dropReason(name string, def uint32) uint32 {
	for i, n := range k.DropReasons {
		if n == name {
			return uint32(i)
		}
	}
	return def
}

// IgnoredDrops are the drop reasons left out: every connection has them
// (the queues freed at its end, a late segment to its TIME_WAIT socket),
// and they name no cause.
var IgnoredDrops = []string{"NOT_SPECIFIED", "QUEUE_PURGE"}

// tracepointProto finds a tracepoint's prototype: for each tracepoint the
// kernel declares typedef void (*btf_trace_<name>)(void *, args...).
func tracepointProto(spec *btf.Spec, name string) (*btf.FuncProto, error) {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return nil, err
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return nil, fmt.Errorf("btf_trace_%s: not a pointer", name)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return nil, fmt.Errorf("btf_trace_%s: not a function prototype", name)
	}
	return proto, nil
}

// Capability numbers from include/uapi/linux/capability.h.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// checkPrivileges fails early, with the fix, when the process can't load
// tracing programs: that needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // can't tell; the load itself will say
	}
	if canLoad(func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }) {
		return nil
	}
	return errPrivileges
}

// canLoad says whether the effective capabilities (has) allow loading
// tracing programs: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
func canLoad(has func(c uint) bool) bool {
	return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
}

var errPrivileges = errors.New("not enough privileges to load BPF tracing programs: run tcptrace as root (sudo tcptrace), or grant it CAP_BPF and CAP_PERFMON")

func explainPermission(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (%v)", errPrivileges, err)
	}
	return err
}
