package tracer

import "testing"

// The ring size's default and bounds agree with the events map of
// bpf/tcptrace.bpf.c and with what the kernel takes.
func TestKernelRingBytes(t *testing.T) {
	spec, err := loadTcptrace()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[tcptraceMapEvents].MaxEntries; got != RingBytesDefault {
		t.Errorf("events map max_entries %d, RingBytesDefault %d", got, RingBytesDefault)
	}
	for n, want := range map[int]bool{
		RingBytesDefault: true, RingBytesMin(): true, RingBytesMax: true,
		RingBytesMin() / 2: false, RingBytesMax * 2: false, 1000: false, 3 << 20: false,
	} {
		if ValidRingBytes(n) != want {
			t.Errorf("ValidRingBytes(%d) = %v", n, !want)
		}
	}
	// max_entries is a __u32, and the kernel takes a power of two below 4 GiB.
	if uint64(RingBytesMax) > 1<<31 {
		t.Errorf("RingBytesMax %d: the kernel takes 2 GiB at most", RingBytesMax)
	}
}
