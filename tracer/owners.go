package tracer

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// tracefs is where the kernel lists its trace events: a classic
// tracepoint is attached by the id it gives there.
const tracefs = "/sys/kernel/tracing"

// attachAccept attaches the accept() exit programs (classic tracepoints in
// the syscalls group). Without them an accepted socket keeps its listener's
// owner until its owner closes it: said, not fatal.
func (t *Tracer) attachAccept() {
	mountTracefs()
	for _, p := range acceptPrograms {
		prog := t.coll.Programs[p.name]
		if prog == nil {
			continue // refused by the verifier: said in load
		}
		l, err := link.Tracepoint("syscalls", p.tracepoint, prog, nil)
		if err != nil {
			t.kernel.Degraded = append(t.kernel.Degraded,
				fmt.Sprintf("syscalls:%s: %s (attaching failed: %v)", p.tracepoint, p.lacking, err))
			continue
		}
		t.links = append(t.links, l)
		if p.name == tcptraceProgHandleAccept4 || p.name == tcptraceProgHandleAccept {
			t.acceptAttached = true
		}
	}
}

// mountTracefs mounts tracefs where the kernel expects it when it is not
// there, as perf and bpftrace do (systemd mounts it at boot on most hosts;
// minimal VMs and containers may not have it). It needs CAP_SYS_ADMIN;
// without it the accept() programs are left out, and said so.
func mountTracefs() {
	for _, dir := range []string{tracefs, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return
		}
	}
	_ = unix.Mount("tracefs", tracefs, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}
