package tracer

import (
	"fmt"

	"github.com/cilium/ebpf/link"
)

// attachAccept attaches the accept() exit programs (classic tracepoints in
// the syscalls group, which need tracefs). Without them an accepted socket
// keeps its listener's owner until its owner closes it: said, not fatal.
func (t *Tracer) attachAccept() {
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
		t.acceptAttached = true
	}
}
