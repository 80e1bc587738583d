package tracer

import (
	"fmt"
	"os"
)

// What tcptrace needs of the kernel, in one place: every message, flag help
// and check item quotes these.
//
// The single effective minimum is MinKernel, the newest of what tcptrace
// can't run without. Each feature's own version is below it or, for the
// optional ones, says what is lost before it.
const (
	// MinKernel is the oldest kernel tcptrace runs on: its programs claim
	// a socket's queued events with BPF atomics (-mcpu=v3, gen.go), which
	// came in Linux 5.12. Every required tracepoint is older.
	MinKernel = "5.12"
	// KernelBTF: /sys/kernel/btf/vmlinux, for tp_btf programs and CO-RE.
	KernelBTF = "5.8"
	// KernelRingBuf: BPF_MAP_TYPE_RINGBUF, the one way events reach user
	// space.
	KernelRingBuf = "5.8"
	// KernelIterTCP: the iter/tcp socket scans.
	KernelIterTCP = "5.9"
	// KernelIterTaskFile: the iter/task_file owner scans.
	KernelIterTaskFile = "5.8"
	// KernelAllTracepoints has every tracepoint tcptrace attaches to, the
	// optional inet_sk_error_report included.
	KernelAllTracepoints = "5.15"
	// KernelSyscallArgs: bpf_task_pt_regs(), with which a syscall's exit
	// reads the arguments of a call that failed.
	KernelSyscallArgs = "5.15"
)

// The BPF ring buffer's size (--ring-size, Config.RingBytes): a power of
// two, from one page to RingBytesMax.
const (
	// RingBytesDefault is max_entries of the events map in
	// bpf/tcptrace.bpf.c, which New replaces with Config.RingBytes.
	RingBytesDefault = 8 << 20
	// RingBytesMax is the most tcptrace asks for. The kernel takes a
	// power of two below 4 GiB (RINGBUF_MAX_DATA_SZ, and max_entries is a
	// __u32), so 2 GiB at most; tcptrace stops at 1 GiB.
	RingBytesMax = 1 << 30
)

// RingBytesMin is the smallest ring buffer: one page.
func RingBytesMin() int { return os.Getpagesize() }

// ValidRingBytes says whether the kernel takes n as the ring buffer's size:
// a power of two between RingBytesMin and RingBytesMax.
func ValidRingBytes(n int) bool {
	return n >= RingBytesMin() && n <= RingBytesMax && n&(n-1) == 0
}

// RingBytesError says why n, set by name, is not a ring buffer size.
func RingBytesError(name string, n int) error {
	return fmt.Errorf("%s must be a power of two between %d and %d bytes, got %d", name, RingBytesMin(), RingBytesMax, n)
}
