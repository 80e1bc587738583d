package tracer

import "github.com/cilium/ebpf"

// SetSpecHook makes New call f on the BPF object before loading it, until
// the returned func restores the previous hook.
func SetSpecHook(f func(*ebpf.CollectionSpec)) (restore func()) {
	old := specHook
	specHook = f
	return func() { specHook = old }
}

// Program names, for tests that change programs.
const (
	ProgDumpOwners = tcptraceProgDumpOwners
	ProgDumpTCP    = tcptraceProgDumpTcp
	ProgSetState   = tcptraceProgHandleSetState
)
