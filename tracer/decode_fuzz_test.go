package tracer

// FuzzDecode: ring buffer samples are the kernel's, but the decoder must
// not trust their content: whatever the bytes, Decode returns an event or
// ErrMalformed, never panics, and what it returns is well-formed.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./tracer/
//
// The seed corpus is testdata/fuzz/FuzzDecode: realistic samples (and a few
// broken ones) written by TestDecodeFuzzSeeds with TCPTRACE_WRITE_FUZZ_SEEDS=1.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// fuzzRSTReasons stands for the kernel's enum sk_rst_reason, with a gap.
var fuzzRSTReasons = []string{"NOT_SPECIFIED", "NO_SOCKET", "", "TCP_RFC7323_PAWS"}

func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d := Decoder{MonoToUnix: 1_700_000_000e9, RSTReasons: fuzzRSTReasons}
		var e timeline.Event
		checkDecode(t, &d, data, &e)
		// The same sample at every offset, through one decoder: samples of
		// every length, and the process-name cache shared across them.
		for off := 1; off < len(data) && off <= 2*RawEventSize; off++ {
			checkDecode(t, &d, data[off:], &e)
		}
		// Valid-length samples with the fuzzer's bytes: exactly one event,
		// and trailing bytes (the ring buffer rounds records up to 8) ignored.
		if len(data) >= RawEventSize {
			sample := append([]byte(nil), data[:RawEventSize]...)
			var e1, e2 timeline.Event
			err1 := d.Decode(sample, &e1)
			err2 := d.Decode(append(sample, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), &e2)
			if (err1 == nil) != (err2 == nil) || (err1 == nil && e1 != e2) {
				t.Fatalf("trailing bytes changed the result: %v %+v / %v %+v", err1, e1, err2, e2)
			}
		}
	})
}

// checkDecode decodes one sample and checks the result is well-formed.
func checkDecode(t *testing.T, d *Decoder, sample []byte, e *timeline.Event) {
	t.Helper()
	// Stale values from the previous event must not survive.
	*e = timeline.Event{Errno: 0xffff, RSTReason: "stale", Comm: "stale"}
	err := d.Decode(sample, e)
	if len(sample) < RawEventSize {
		if err == nil {
			t.Fatalf("a %d-byte sample decoded; want ErrMalformed", len(sample))
		}
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		return
	}
	var r rawEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), RawEventSize), sample)
	if e.Type < timeline.EventState || e.Type > timeline.EventSyscallError || e.Type.String() != eventName(e.Type) {
		t.Fatalf("type %d accepted", e.Type)
	}
	switch r.Family {
	case afInet:
		if !e.LAddr.Is4() || !e.RAddr.Is4() {
			t.Fatalf("AF_INET sample gave %v, %v", e.LAddr, e.RAddr)
		}
	case afInet6:
		if !e.LAddr.Is6() || !e.RAddr.Is6() || e.Family() != "ipv6" {
			t.Fatalf("AF_INET6 sample gave %v, %v", e.LAddr, e.RAddr)
		}
	default:
		t.Fatalf("family %d accepted", r.Family)
	}
	if len(e.Comm) > 16 || strings.IndexByte(e.Comm, 0) >= 0 {
		t.Fatalf("comm %q: longer than 16 bytes or with a NUL", e.Comm)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&r.Comm[0])), len(r.Comm))
	if !strings.HasPrefix(string(raw), e.Comm) {
		t.Fatalf("comm %q is not the sample's %q", e.Comm, raw)
	}
	if e.Type != timeline.EventRSTSent && e.RSTReason != "" {
		t.Fatalf("RST reason %q on a %s event", e.RSTReason, e.Type)
	}
	if e.Type == timeline.EventRSTSent && e.Errno != 0 {
		t.Fatalf("errno %d on a RST event", e.Errno)
	}
	if e.Type != timeline.EventState && e.Type != timeline.EventError && e.Type != timeline.EventSyscallError && e.Errno != 0 {
		t.Fatalf("stale errno %d on a %s event", e.Errno, e.Type)
	}
	if e.Type == timeline.EventRSTSent && r.Flags&uint8(tcptraceEventFlagsEVENT_F_REASON) == 0 && e.RSTReason != "" {
		t.Fatalf("RST reason %q without the reason flag", e.RSTReason)
	}
	if e.Type != timeline.EventDrop && e.DropReason != "" {
		t.Fatalf("drop reason %q on a %s event", e.DropReason, e.Type)
	}
	if e.Type == timeline.EventDrop && (e.DropReason == "" || e.OldState != 0) {
		t.Fatalf("drop event with reason %q, old state %s", e.DropReason, e.OldState)
	}
	// What the writers print must be printable: names of types and states.
	_ = e.OldState.String() + e.NewState.String() + timeline.ErrnoName(e.Errno) + e.Family()
}

func eventName(t timeline.EventType) string {
	return [...]string{"", "state", "retransmit", "synack_retransmit", "rst_sent", "rst_received", "error", "drop", "syscall_error"}[t]
}

// rawSample lays out one struct event as the BPF program writes it.
func rawSample(r rawEvent) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), RawEventSize)...)
}

func fuzzComm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 16; i++ {
		c[i] = int8(s[i])
	}
	return c
}

// decodeSeeds are samples as the kernel writes them, and a few it never does.
func decodeSeeds() map[string][]byte {
	lo4 := [16]byte{127, 0, 0, 1}
	lo6 := [16]byte{15: 1}
	base := rawEvent{
		TsNs: 12_345_678_900, Cookie: 4242, Saddr: lo4, Daddr: lo4, Netns: 4026532382,
		Pid: 1234, Uid: 1000, Sport: 46062, Dport: 8080, Family: afInet,
		Type: uint8(timeline.EventState), Oldstate: uint8(timeline.StateClose),
		Newstate: uint8(timeline.StateSynSent), Flags: uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN),
		Comm: fuzzComm("curl"), Cgroup: 1,
	}
	base.Fig.Base.SrttUs = 800
	with := func(f func(*rawEvent)) []byte { r := base; f(&r); return rawSample(r) }
	seeds := map[string][]byte{
		"state_syn_sent_ipv4": rawSample(base),
		"state_timewait_ipv6": with(func(r *rawEvent) {
			r.Family, r.Saddr, r.Daddr = afInet6, lo6, lo6
			r.Type, r.Oldstate, r.Newstate = uint8(timeline.EventState), uint8(timeline.StateFinWait2), uint8(timeline.StateClose)
			r.Flags = uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD | tcptraceEventFlagsEVENT_F_SOCK_DONE)
			r.Fig.Base.BytesAcked, r.Fig.Base.BytesReceived, r.Fig.Base.TotalRetrans = 1<<20, 4096, 3
			r.Fig.Base.Jiffies = 4294667296
		}),
		"state_close_refused": with(func(r *rawEvent) {
			r.Oldstate, r.Newstate, r.Reason = uint8(timeline.StateSynSent), uint8(timeline.StateClose), uint16(syscall.ECONNREFUSED)
		}),
		"retransmit_syn": with(func(r *rawEvent) {
			r.Type, r.Oldstate, r.Newstate = uint8(timeline.EventRetransmit), 0, uint8(timeline.StateSynSent)
		}),
		"synack_retransmit": with(func(r *rawEvent) {
			r.Type, r.Newstate, r.Sport, r.Dport = uint8(timeline.EventSynAckRetransmit), uint8(timeline.StateSynRecv), 8080, 46062
		}),
		"rst_sent_reason": with(func(r *rawEvent) {
			r.Type, r.Newstate = uint8(timeline.EventRSTSent), uint8(timeline.StateClose)
			r.Flags |= uint8(tcptraceEventFlagsEVENT_F_REASON)
			r.Reason = 3
		}),
		"rst_sent_reason_unknown": with(func(r *rawEvent) {
			r.Type, r.Flags, r.Reason = uint8(timeline.EventRSTSent), uint8(tcptraceEventFlagsEVENT_F_REASON), 0xffff
		}),
		"rst_sent_no_socket": with(func(r *rawEvent) {
			r.Type, r.Cookie, r.Pid, r.Comm = uint8(timeline.EventRSTSent), 0, 0, [16]int8{}
			r.Flags = uint8(tcptraceEventFlagsEVENT_F_NO_SOCKET | tcptraceEventFlagsEVENT_F_REASON)
			r.Reason = 1
		}),
		"rst_received": with(func(r *rawEvent) {
			r.Type, r.Newstate = uint8(timeline.EventRSTReceived), uint8(timeline.StateEstablished)
		}),
		"error_econnreset": with(func(r *rawEvent) {
			r.Type, r.Newstate, r.Reason = uint8(timeline.EventError), uint8(timeline.StateClose), uint16(syscall.ECONNRESET)
		}),
		"comm_16_bytes_no_nul": with(func(r *rawEvent) {
			for i := range r.Comm {
				r.Comm[i] = 'x'
			}
		}),
		"comm_hostile": with(func(r *rawEvent) { r.Comm = fuzzComm("\x1b]0;pwn\x07\xff\xfe\x1b[2J") }),
		"bad_type":     with(func(r *rawEvent) { r.Type = 9 }),
		"bad_family":   with(func(r *rawEvent) { r.Family = 1 }),
		"bad_state":    with(func(r *rawEvent) { r.Oldstate, r.Newstate = 200, 255 }),
		"short":        rawSample(base)[:RawEventSize-1],
		"empty":        {},
	}
	return seeds
}

// TestDecodeFuzzSeeds decodes the seeds and, with TCPTRACE_WRITE_FUZZ_SEEDS=1,
// writes them to testdata/fuzz/FuzzDecode.
func TestDecodeFuzzSeeds(t *testing.T) {
	write := os.Getenv("TCPTRACE_WRITE_FUZZ_SEEDS") != ""
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range decodeSeeds() {
		d := Decoder{RSTReasons: fuzzRSTReasons}
		var e timeline.Event
		err := d.Decode(b, &e)
		wantErr := strings.HasPrefix(name, "bad_") && name != "bad_state" || name == "short" || name == "empty"
		if (err != nil) != wantErr {
			t.Errorf("%s: error %v, want error %v", name, err, wantErr)
		}
		if name == "rst_sent_reason" && e.RSTReason != "TCP_RFC7323_PAWS" ||
			name == "rst_sent_reason_unknown" && e.RSTReason != "REASON_65535" {
			t.Errorf("%s: reason %q", name, e.RSTReason)
		}
		if write {
			file := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
