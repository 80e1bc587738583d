package tracer

// FuzzDecode: ring buffer records are the kernel's, but the decoder must
// not trust their content: whatever the bytes, Decode returns events or
// ErrMalformed, never panics, and what it returns is well-formed.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./tracer/
//
// The seed corpus is testdata/fuzz/FuzzDecode: realistic records of one
// entry, as events sent at once (and a few broken ones), written by
// TestDecodeFuzzSeeds with TCPTRACE_WRITE_FUZZ_SEEDS=1.

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
		checkDecode(t, &d, data)
		// The same sample at every offset, through one decoder: samples of
		// every length, and the process-name cache shared across them.
		for off := 1; off < len(data) && off <= 2*recordHead; off++ {
			checkDecode(t, &d, data[off:])
		}
		// Whole records with the fuzzer's bytes: trailing bytes (the ring
		// buffer rounds records up to 8) are ignored.
		if len(data) >= RecordSize {
			sample := append([]byte(nil), data[:RecordSize]...)
			ev1, err1 := decodeAll(&d, sample)
			ev2, err2 := decodeAll(&d, append(sample, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
			if (err1 == nil) != (err2 == nil) || fmt.Sprint(ev1) != fmt.Sprint(ev2) {
				t.Fatalf("trailing bytes changed the result: %v %+v / %v %+v", err1, ev1, err2, ev2)
			}
		}
	})
}

func decodeAll(d *Decoder, sample []byte) ([]timeline.Event, error) {
	var out []timeline.Event
	var e timeline.Event
	err := d.Decode(sample, &e, func(e *timeline.Event) { out = append(out, *e) })
	return out, err
}

// checkDecode decodes one sample and checks each event is well-formed.
func checkDecode(t *testing.T, d *Decoder, sample []byte) {
	t.Helper()
	// Stale values from the previous event must not survive.
	e := timeline.Event{Errno: 0xffff, RSTReason: "stale", Comm: "stale"}
	var r rawRecord
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), RecordSize), sample)
	n := 0
	err := d.Decode(sample, &e, func(e *timeline.Event) {
		checkEvent(t, &r, &r.Ev[n], e)
		n++
		*e = timeline.Event{Errno: 0xffff, RSTReason: "stale", Comm: "stale"}
	})
	if len(sample) < recordHead+entrySize && err == nil {
		t.Fatalf("a %d-byte sample decoded; want ErrMalformed", len(sample))
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		if n != 0 {
			t.Fatalf("%d events handed on from a malformed record", n)
		}
		return
	}
	if n != int(r.N) || len(sample) < recordHead+n*entrySize {
		t.Fatalf("%d events from a record of %d entries in %d bytes", n, r.N, len(sample))
	}
}

// checkEvent checks one decoded event against its record and entry.
func checkEvent(t *testing.T, r *rawRecord, ent *rawEntry, e *timeline.Event) {
	t.Helper()
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
	if e.Comm != "" && ent.Flags&uint8(tcptraceEventFlagsEVENT_F_OWNER) == 0 {
		t.Fatalf("owner %q on an entry without one", e.Comm)
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
	if e.Type == timeline.EventRSTSent && ent.Flags&uint8(tcptraceEventFlagsEVENT_F_REASON) == 0 && e.RSTReason != "" {
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

// rawSample lays out a record as the BPF programs send it: its head and
// its entries.
func rawSample(r rawRecord) []byte {
	return append([]byte(nil), recordSample(&r)...)
}

func fuzzComm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 16; i++ {
		c[i] = int8(s[i])
	}
	return c
}

// queuedClient is a client's whole life as its queue sends it at CLOSE:
// five state changes, the figures of ESTABLISHED and of the end.
func queuedClient(r rawRecord) rawRecord {
	states := []timeline.State{timeline.StateClose, timeline.StateSynSent, timeline.StateEstablished,
		timeline.StateFinWait1, timeline.StateFinWait2, timeline.StateClose}
	r.N = uint8(len(states) - 1)
	for i := range r.N {
		r.Ev[i] = rawEntry{TsNs: r.Ev[0].TsNs + uint64(i)*1000, Sport: 46062, Type: uint8(timeline.EventState),
			Oldstate: uint8(states[i]), Newstate: uint8(states[i+1]), Flags: uint8(tcptraceEventFlagsEVENT_F_OWNER)}
	}
	r.Established.SrttUs, r.Established.Jiffies = 800, 4294667296
	r.Closed.Base = r.Established
	r.Closed.Base.BytesAcked, r.Closed.WriteSeq = 78, 1079
	return r
}

// decodeSeeds are samples as the kernel writes them, and a few it never does.
func decodeSeeds() map[string][]byte {
	lo4 := [16]byte{127, 0, 0, 1}
	lo6 := [16]byte{15: 1}
	base := rawRecord{
		Kind: kindEvents, N: 1, Cookie: 4242, Saddr: lo4, Daddr: lo4, Netns: 4026532382,
		Pid: 1234, Uid: 1000, Dport: 8080, Family: afInet, Comm: fuzzComm("curl"), Cgroup: 1,
	}
	base.Ev[0] = rawEntry{TsNs: 12_345_678_900, Sport: 46062, Type: uint8(timeline.EventState),
		Oldstate: uint8(timeline.StateClose), Newstate: uint8(timeline.StateSynSent),
		Flags: uint8(tcptraceEventFlagsEVENT_F_OWNER_SEEN | tcptraceEventFlagsEVENT_F_OWNER)}
	with := func(f func(*rawRecord, *rawEntry)) []byte { r := base; f(&r, &r.Ev[0]); return rawSample(r) }
	seeds := map[string][]byte{
		"state_syn_sent_ipv4": rawSample(base),
		"state_timewait_ipv6": with(func(r *rawRecord, ent *rawEntry) {
			r.Family, r.Saddr, r.Daddr = afInet6, lo6, lo6
			ent.Type, ent.Oldstate, ent.Newstate = uint8(timeline.EventState), uint8(timeline.StateFinWait2), uint8(timeline.StateClose)
			ent.Flags = uint8(tcptraceEventFlagsEVENT_F_SOCK_DEAD | tcptraceEventFlagsEVENT_F_SOCK_DONE)
			r.Closed.Base.BytesAcked, r.Closed.Base.BytesReceived, r.Closed.Base.TotalRetrans = 1<<20, 4096, 3
			r.Closed.Base.Jiffies = 4294667296
		}),
		"state_close_refused": with(func(r *rawRecord, ent *rawEntry) {
			ent.Oldstate, ent.Newstate, ent.Reason = uint8(timeline.StateSynSent), uint8(timeline.StateClose), uint16(syscall.ECONNREFUSED)
		}),
		"retransmit_syn": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Oldstate, ent.Newstate = uint8(timeline.EventRetransmit), 0, uint8(timeline.StateSynSent)
		}),
		"synack_retransmit": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Newstate, ent.Sport, r.Dport = uint8(timeline.EventSynAckRetransmit), uint8(timeline.StateSynRecv), 8080, 46062
		}),
		"rst_sent_reason": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Newstate = uint8(timeline.EventRSTSent), uint8(timeline.StateClose)
			ent.Flags |= uint8(tcptraceEventFlagsEVENT_F_REASON)
			ent.Reason = 3
		}),
		"rst_sent_reason_unknown": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Flags, ent.Reason = uint8(timeline.EventRSTSent), uint8(tcptraceEventFlagsEVENT_F_REASON), 0xffff
		}),
		"rst_sent_no_socket": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, r.Cookie, r.Pid, r.Comm = uint8(timeline.EventRSTSent), 0, 0, [16]int8{}
			ent.Flags = uint8(tcptraceEventFlagsEVENT_F_NO_SOCKET | tcptraceEventFlagsEVENT_F_REASON)
			ent.Reason = 1
		}),
		"rst_received": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Newstate = uint8(timeline.EventRSTReceived), uint8(timeline.StateEstablished)
		}),
		"error_econnreset": with(func(r *rawRecord, ent *rawEntry) {
			ent.Type, ent.Newstate, ent.Reason = uint8(timeline.EventError), uint8(timeline.StateClose), uint16(syscall.ECONNRESET)
		}),
		"comm_16_bytes_no_nul": with(func(r *rawRecord, ent *rawEntry) {
			for i := range r.Comm {
				r.Comm[i] = 'x'
			}
		}),
		"comm_hostile": with(func(r *rawRecord, ent *rawEntry) { r.Comm = fuzzComm("\x1b]0;pwn\x07\xff\xfe\x1b[2J") }),
		"bad_type":     with(func(r *rawRecord, ent *rawEntry) { ent.Type = 9 }),
		"bad_family":   with(func(r *rawRecord, ent *rawEntry) { r.Family = 1 }),
		"bad_state":    with(func(r *rawRecord, ent *rawEntry) { ent.Oldstate, ent.Newstate = 200, 255 }),
		"bad_kind":     with(func(r *rawRecord, ent *rawEntry) { r.Kind = kindStall }),
		"bad_count":    with(func(r *rawRecord, ent *rawEntry) { r.N = 0 }),
		"queue_client": rawSample(queuedClient(base)),
		"short":        rawSample(base)[:recordHead+entrySize-1],
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
		err := d.Decode(b, &e, func(*timeline.Event) {})
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
