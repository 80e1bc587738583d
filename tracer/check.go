package tracer

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Preflight is what `tcptrace check` reports: what tcptrace needs, what this
// host offers, and whether tcptrace can run. Unlike New and ProbeKernel it
// goes on after a failure, so that one run shows every problem.
type Preflight struct {
	Kernel       KernelInfo        `json:"kernel"`
	BTF          CheckItem         `json:"btf"`
	RingBuffer   CheckItem         `json:"ring_buffer"`
	Tracepoints  []TracepointCheck `json:"tracepoints"`
	Optional     []CheckItem       `json:"optional"`
	Iterators    []CheckItem       `json:"iterators"`
	Capabilities Capabilities      `json:"capabilities"`
	Load         LoadCheck         `json:"load"`

	// Verdict is VerdictOK, VerdictDegraded or VerdictCannotRun.
	Verdict string `json:"verdict"`
	// Degraded says what tcptrace can't show on this host, and why.
	Degraded []string `json:"degraded"`
	// Problems say why tcptrace can't run; Advice what to do about them.
	Problems []string `json:"problems"`
	Advice   []string `json:"advice"`
}

// Verdicts.
const (
	VerdictOK        = "ok"
	VerdictDegraded  = "degraded"
	VerdictCannotRun = "cannot_run"
)

// Check statuses.
const (
	StatusOK      = "ok"
	StatusMissing = "missing" // the kernel lacks it
	StatusUnknown = "unknown" // could not tell (privileges, no BTF)
	StatusFailed  = "failed"  // tried and failed
	StatusSkipped = "skipped" // not tried
)

// KernelInfo is uname and the kernel's lockdown mode.
type KernelInfo struct {
	Release string `json:"release"`
	Version string `json:"version"`
	Machine string `json:"machine"`
	// Lockdown is the active mode of /sys/kernel/security/lockdown
	// ("none", "integrity", "confidentiality"); empty when not known.
	Lockdown string `json:"lockdown"`
}

// CheckItem is one thing checked.
type CheckItem struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Required bool   `json:"required"`
	// Detail says what it is for, or what is lost without it.
	Detail string `json:"detail"`
	Error  string `json:"error,omitempty"`
}

// TracepointCheck is one tracepoint tcptrace attaches to.
type TracepointCheck struct {
	Name     string   `json:"name"` // "tcp:tcp_send_reset"
	Status   string   `json:"status"`
	Required bool     `json:"required"`
	Programs []string `json:"programs"` // BPF programs for it
	// Lacking says what tcptrace can't show without an optional tracepoint.
	Lacking string `json:"lacking,omitempty"`
	// Args is the number of arguments of the kernel's prototype, without
	// the leading void *.
	Args int `json:"args"`
}

// Capabilities are the process's own, from capget(2).
type Capabilities struct {
	UID  int       `json:"uid"`
	EUID int       `json:"euid"`
	Caps []CapInfo `json:"caps"`
	// CanLoad: what New checks, CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
	CanLoad bool   `json:"can_load"`
	Error   string `json:"error,omitempty"`
}

// CapInfo is one capability in the effective and permitted sets.
type CapInfo struct {
	Name      string `json:"name"`
	Effective bool   `json:"effective"`
	Permitted bool   `json:"permitted"`
	// For says what tcptrace uses it for.
	For string `json:"for"`
}

// LoadCheck is the result of loading and attaching the real programs.
type LoadCheck struct {
	Status   string   `json:"status"`
	Attached []string `json:"attached"` // tracepoints attached to
	Programs int      `json:"programs"` // programs loaded, iterators included
	Millis   float64  `json:"ms"`
	Error    string   `json:"error,omitempty"`
	// Refused lists optional programs the verifier refused; tracing works
	// without them (they are in Degraded too).
	Refused []string `json:"refused"`
	// Events says how events reach tcptrace: "queued per socket" (one
	// ring-buffer record per connection end) or "one by one".
	Events string `json:"events"`
	// Owners says where owners are learned, and whether a program runs
	// on every send() and recv() (only with --owner-io).
	Owners string `json:"owners"`
	// Degraded: what the loaded programs could not do here (an attach
	// that failed), beside Refused.
	Degraded []string `json:"degraded"`
	// Host says what this kernel tells of host-side causes: drops and
	// their reasons, failed system calls, failed retransmission attempts.
	Host string `json:"host"`
}

// More capability numbers (include/uapi/linux/capability.h).
const (
	capNetAdmin  = 12
	capSysPtrace = 19
)

// checkedCaps are the capabilities Preflight reports, with their use.
var checkedCaps = []struct {
	name string
	num  uint
	use  string
}{
	{"CAP_BPF", capBPF, "load BPF programs and maps, with CAP_PERFMON (Linux >= 5.8)"},
	{"CAP_PERFMON", capPerfmon, "tracing programs that read kernel memory, with CAP_BPF"},
	{"CAP_SYS_ADMIN", capSysAdmin, "stands for both; and --netns needs it to enter the namespace (setns) for its socket scans"},
	{"CAP_SYS_PTRACE", capSysPtrace, "only for --netns /proc/PID/ns/net of another user's process"},
	{"CAP_NET_ADMIN", capNetAdmin, "not needed by tcptrace (shown for completeness)"},
}

// iterFuncs are the BTF functions iterator programs attach through.
var iterFuncs = []struct{ name, fn, detail string }{
	{"iter/tcp", "bpf_iter_tcp", "scan of the TCP sockets open when tracing starts (Linux >= " + KernelIterTCP + ")"},
	{"iter/task_file", "bpf_iter_task_file", "owners of the sockets open when tracing starts (Linux >= " + KernelIterTaskFile + ")"},
}

// RunPreflight checks everything tcptrace needs. With load, and if the
// privileges allow, it also loads and attaches the real programs with New
// and detaches them at once: the only proof the verifier accepts them.
func RunPreflight(load, ownerIO bool) *Preflight {
	p := &Preflight{Degraded: []string{}, Problems: []string{}, Advice: []string{}}
	p.Kernel = kernelInfo()
	p.Capabilities = processCaps()
	sup := probeSupport()
	p.checkBTF(sup)
	p.checkRingBuffer(sup)
	var k *Kernel // nil without BTF: what it offers is unknown
	if sup.spec != nil {
		k = newKernel(sup.spec)
	}
	p.checkTracepoints(sup.spec)
	p.checkOptional(k)
	p.checkIterators(sup.spec)
	p.checkAccess()
	p.checkLoad(load, ownerIO)
	p.Verdict = p.verdict()
	return p
}

// checkBTF reports the kernel's type information.
func (p *Preflight) checkBTF(sup support) {
	p.BTF = CheckItem{Name: vmlinuxBTF, Required: true, Detail: "kernel type information: tp_btf programs and CO-RE need it"}
	switch {
	case sup.noBTF != nil:
		p.BTF.Status, p.BTF.Error = StatusMissing, sup.noBTF.Error()
		p.problem(problemNoBTF, adviceNoBTF)
	case sup.specErr != nil:
		p.BTF.Status, p.BTF.Error = StatusFailed, sup.specErr.Error()
		p.problem(problemBTFUnreadable+" failed: "+sup.specErr.Error(), "check that "+vmlinuxBTF+" is readable")
	default:
		p.BTF.Status = StatusOK
	}
}

// checkRingBuffer reports BPF ring buffer support; the probe creates a
// map, which needs CAP_BPF.
func (p *Preflight) checkRingBuffer(sup support) {
	p.RingBuffer = CheckItem{Name: "BPF_MAP_TYPE_RINGBUF", Required: true,
		Detail: "events reach user space through one BPF ring buffer (Linux >= " + KernelRingBuf + ")"}
	switch {
	case sup.ringErr == nil:
		p.RingBuffer.Status = StatusOK
	case sup.ringMissing():
		p.RingBuffer.Status, p.RingBuffer.Error = StatusMissing, sup.ringErr.Error()
		p.problem(problemNoRingBuf, adviceNoRingBuf)
	default:
		p.RingBuffer.Status, p.RingBuffer.Error = StatusUnknown, sup.ringErr.Error()
		if p.Capabilities.CanLoad {
			p.problem(problemRingProbe+" failed: "+sup.ringErr.Error(), "")
		}
	}
}

// checkTracepoints reports each tracepoint from its prototype in the
// kernel's BTF (spec; nil when unknown), with the programs attached to it.
func (p *Preflight) checkTracepoints(spec *btf.Spec) {
	seen := map[string]int{}
	for _, prog := range programs {
		if i, ok := seen[prog.tracepoint]; ok {
			p.Tracepoints[i].Programs = append(p.Tracepoints[i].Programs, prog.name)
			continue
		}
		seen[prog.tracepoint] = len(p.Tracepoints)
		p.Tracepoints = append(p.Tracepoints, p.checkTracepoint(spec, prog))
	}
}

// checkTracepoint reports prog's tracepoint.
func (p *Preflight) checkTracepoint(spec *btf.Spec, prog program) TracepointCheck {
	tc := TracepointCheck{Name: tracepointGroup(prog.tracepoint) + ":" + prog.tracepoint,
		Required: prog.required, Lacking: prog.lacking, Programs: []string{prog.name}, Status: StatusUnknown}
	if spec == nil {
		return tc
	}
	proto, err := tracepointProto(spec, prog.tracepoint)
	switch {
	case err == nil:
		tc.Status, tc.Args = StatusOK, len(proto.Params)-1
	case tc.Required:
		tc.Status = StatusMissing
		p.problem(fmt.Sprintf(problemNoTracepoint, tc.Name), adviceTracepoints)
	default:
		tc.Status = StatusMissing
		p.Degraded = append(p.Degraded, tc.Name+": "+prog.lacking)
	}
	return tc
}

// checkOptional reports the optional data the kernel (k; nil when
// unknown) may or may not give.
func (p *Preflight) checkOptional(k *Kernel) {
	status := StatusUnknown
	switch {
	case k == nil:
	case k.RSTReason:
		status = StatusOK
	default:
		status = StatusMissing
		p.Degraded = append(p.Degraded, degradedRSTReason,
			"RSTs to closed ports and from timewait sockets: tcp_send_reset fires only for full sockets before Linux 6.10")
	}
	reasons := CheckItem{Name: "rst_reason", Status: status,
		Detail: "why this host sent a RST (enum sk_rst_reason): tcp_send_reset's reason argument, Linux >= 6.10"}
	noSocket := CheckItem{Name: "rst_without_full_socket", Status: status,
		Detail: "RSTs sent for closed ports and by timewait sockets (cookie 0 or the timewait socket's): " +
			"before Linux 6.10 tcp_send_reset fires only for full sockets, so those RSTs are invisible"}
	p.Optional = append(p.Optional, reasons, noSocket)
}

// checkIterators reports the BPF iterators: the kernel declares
// bpf_iter_<target> for each target.
func (p *Preflight) checkIterators(spec *btf.Spec) {
	for _, it := range iterFuncs {
		item := CheckItem{Name: it.name, Required: true, Detail: it.detail, Status: StatusUnknown}
		if spec != nil {
			var fn *btf.Func
			if err := spec.TypeByName(it.fn, &fn); err == nil {
				item.Status = StatusOK
			} else {
				item.Status, item.Error = StatusMissing, err.Error()
				p.problem("this kernel has no "+it.name+" BPF iterator", "use Linux >= "+KernelIterTCP)
			}
		}
		p.Iterators = append(p.Iterators, item)
	}
}

// checkAccess reports what keeps this process from loading the programs:
// privileges, and the kernel's lockdown.
func (p *Preflight) checkAccess() {
	if !p.Capabilities.CanLoad {
		p.problem("not enough privileges to load BPF tracing programs (need CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
			"run tcptrace as root (sudo tcptrace), or grant it CAP_BPF and CAP_PERFMON "+
				"(sudo setcap cap_bpf,cap_perfmon+ep ./tcptrace)")
	}
	if p.Kernel.Lockdown == "confidentiality" {
		p.problem("kernel lockdown is in confidentiality mode: it forbids BPF programs from reading kernel memory",
			"boot without lockdown=confidentiality (or with Secure Boot's lockdown off)")
	}
}

// checkLoad does the real thing, when asked and nothing stands in the way:
// load, attach, detach.
func (p *Preflight) checkLoad(load, ownerIO bool) {
	switch {
	case !load:
		p.Load = LoadCheck{Status: StatusSkipped, Attached: []string{}, Refused: []string{}, Error: "not asked to (--no-load)"}
	case len(p.Problems) > 0:
		p.Load = LoadCheck{Status: StatusSkipped, Attached: []string{}, Refused: []string{}, Error: "not tried: see the problems above"}
	default:
		p.Load = loadCheck(ownerIO)
		if p.Load.Status != StatusOK {
			p.problem("loading the programs failed: "+p.Load.Error, "")
		}
		p.Degraded = append(p.Degraded, p.Load.Refused...)
		p.Degraded = append(p.Degraded, p.Load.Degraded...)
	}
}

// verdict sums up the problems and what is degraded.
func (p *Preflight) verdict() string {
	switch {
	case len(p.Problems) > 0:
		return VerdictCannotRun
	case len(p.Degraded) > 0:
		return VerdictDegraded
	}
	return VerdictOK
}

func (p *Preflight) problem(why, advice string) {
	p.Problems = append(p.Problems, why)
	if advice != "" && !slices.Contains(p.Advice, advice) {
		p.Advice = append(p.Advice, advice)
	}
}

// loadCheck loads and attaches everything, as a trace would, then closes.
func loadCheck(ownerIO bool) LoadCheck {
	start := time.Now()
	t, err := New(Config{OwnerIO: ownerIO})
	lc := LoadCheck{Attached: []string{}, Refused: []string{}, Degraded: []string{}, Millis: float64(time.Since(start).Microseconds()) / 1e3}
	if err != nil {
		lc.Status, lc.Error = StatusFailed, err.Error()
		return lc
	}
	lc.Status = StatusOK
	lc.Programs = len(t.coll.Programs)
	lc.Refused = append(lc.Refused, t.kernel.Refused...)
	for _, prog := range programs {
		if t.coll.Programs[prog.name] != nil {
			lc.Attached = append(lc.Attached, tracepointGroup(prog.tracepoint)+":"+prog.tracepoint)
		}
	}
	lc.Events = "one by one, as they happen (about five ring-buffer records per connection end)"
	if t.Queueing() {
		lc.Events = "queued per socket, sent when it closes (one ring-buffer record per connection end)"
	}
	lc.Owners = "at connect, listen, close"
	if t.acceptAttached {
		lc.Owners += ", accept"
	} else {
		lc.Degraded = append(lc.Degraded, "syscalls:sys_exit_accept4: "+acceptPrograms[0].lacking+
			" (is tracefs mounted at /sys/kernel/tracing?)")
	}
	if t.coll.Programs[tcptraceProgHandleSendLength] != nil {
		lc.Owners += "; and at every send() and recv() (--owner-io: a BPF program on every I/O of the host)"
	} else {
		lc.Owners += " (per connection; nothing runs per I/O; --owner-io adds send() and recv())"
	}
	lc.Host = hostCauses(t)
	if err := t.Close(); err != nil {
		lc.Status, lc.Error = StatusFailed, "detaching: "+err.Error()
	}
	return lc
}

// hostCauses says what the loaded programs tell of host-side causes.
func hostCauses(t *Tracer) string {
	var parts []string
	switch {
	case t.coll.Programs[tcptraceProgHandleKfreeSkb] != nil:
		parts = append(parts, fmt.Sprintf("drops with %d reasons, by socket or 4-tuple", countNames(t.kernel.DropReasons)))
	case t.coll.Programs[tcptraceProgHandleKfreeSkbNorxsk] != nil:
		parts = append(parts, fmt.Sprintf("drops with %d reasons (received ones by 4-tuple: no rx_sk before Linux 6.11)", countNames(t.kernel.DropReasons)))
	default:
		parts = append(parts, "no drops (kfree_skb has no reason before Linux 5.17)")
	}
	if t.coll.Programs[tcptraceProgHandleExitConnect] != nil {
		parts = append(parts, "failed connect/bind/listen/accept (a program per call)")
	}
	if t.kernel.RetransmitErr {
		parts = append(parts, "failed retransmission attempts told apart")
	} else {
		parts = append(parts, "failed retransmission attempts not traced (before Linux 6.17)")
	}
	return strings.Join(parts, "; ")
}

func countNames(names []string) int {
	n := 0
	for _, s := range names {
		if s != "" && !strings.HasPrefix(s, "SKB_") {
			n++
		}
	}
	return n
}

// tracepointGroup is the trace event system of a tracepoint tcptrace uses.
func tracepointGroup(tp string) string {
	switch {
	case strings.HasPrefix(tp, "tcp_"):
		return "tcp"
	case tp == "kfree_skb":
		return "skb"
	}
	return "sock"
}

func kernelInfo() KernelInfo {
	var k KernelInfo
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		k.Release = unix.ByteSliceToString(u.Release[:])
		k.Version = unix.ByteSliceToString(u.Version[:])
		k.Machine = unix.ByteSliceToString(u.Machine[:])
	}
	// "none [integrity] confidentiality": the active mode is bracketed.
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		if i := bytes.IndexByte(b, '['); i >= 0 {
			if j := bytes.IndexByte(b[i:], ']'); j > 0 {
				k.Lockdown = string(b[i+1 : i+j])
			}
		}
	}
	return k
}

func processCaps() Capabilities {
	c := Capabilities{UID: os.Getuid(), EUID: os.Geteuid()}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		c.Error = fmt.Sprintf("capget: %v", err)
		c.CanLoad = checkPrivileges() == nil
		return c
	}
	eff := func(n uint) bool { return data[n/32].Effective&(1<<(n%32)) != 0 }
	perm := func(n uint) bool { return data[n/32].Permitted&(1<<(n%32)) != 0 }
	for _, cc := range checkedCaps {
		c.Caps = append(c.Caps, CapInfo{Name: cc.name, Effective: eff(cc.num), Permitted: perm(cc.num), For: cc.use})
	}
	c.CanLoad = canLoad(eff)
	return c
}
