package output

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

func cgroupName(id uint64) string { return map[uint64]string{77: "/system.slice/demo.service"}[id] }

// containerOf stands for a containers.Resolver: cgroup 88 is a Kubernetes
// container with its names, 99 a Podman container whose name is not known
// yet, 66 a container with a hostile name; the rest are host processes.
func containerOf(id uint64) *containers.Info {
	return map[uint64]*containers.Info{
		88: {ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", Name: "nginx", Runtime: "containerd",
			Pod: "web-7d9f", Namespace: "default", PodUID: "7d5b9c3e-1f2a-4b3c-9d8e-0123456789ab"},
		99: {ID: "f3f36403528ae5c4a4b006dae77234ea32f930d329774e6a04779f865727cc22", Runtime: "podman"},
		66: {ID: "f3f36403528ae5c4a4b006dae77234ea32f930d329774e6a04779f865727cc22", Name: "evil\x1b[2J\"", Runtime: "docker"},
	}[id]
}

var update = flag.Bool("update", false, "rewrite the golden files")

const msec = int64(time.Millisecond)

var t0 = time.Date(2026, 11, 25, 14, 2, 11, 204_000_000, time.UTC).UnixNano()

func step(tms float64, kind timeline.StepKind, from, to timeline.State) timeline.Step {
	return timeline.Step{Time: t0 + int64(tms*float64(msec)), Kind: kind, From: from, To: to}
}

// sample builds records covering every outcome and step kind.
func sample() []*timeline.Connection {
	lo := netip.MustParseAddr("127.0.0.1")
	v6 := netip.MustParseAddr("::1")
	base := func(cookie uint64, role timeline.Role, outcome timeline.Outcome, durMs float64) *timeline.Connection {
		return &timeline.Connection{
			Cookie: cookie, Start: t0, End: t0 + int64(durMs*float64(msec)),
			LAddr: lo, RAddr: lo, LPort: 41230, RPort: 8080, NetNS: 4026531840,
			Role: role, PID: 812, UID: 1000, Comm: "curl", Outcome: outcome, Handshake: -1,
		}
	}
	closed := base(4097, timeline.RoleClient, timeline.OutcomeClosed, 1.204)
	closed.ClosedBy = timeline.ClosedByLocal
	closed.Reason = timeline.ReasonClosedLocal
	closed.BytesSent, closed.BytesReceived, closed.SRTT, closed.HandshakeRTT = 18, 1<<20+5, 45, 40
	closed.Cgroup = 77
	// Its server is on this host too: the two records were paired.
	closed.PeerCookie, closed.PeerPID, closed.PeerComm = 4103, 813, "nginx"
	closed.Handshake = 257 * 1000
	closed.States = []timeline.State{timeline.StateSynSent, timeline.StateEstablished, timeline.StateFinWait1,
		timeline.StateFinWait2, timeline.StateTimeWait}
	tw := step(1.204, timeline.StepState, timeline.StateFinWait2, timeline.StateTimeWait)
	tw.TimewaitSocket = true
	closed.Steps = []timeline.Step{
		step(0, timeline.StepState, timeline.StateClose, timeline.StateSynSent),
		step(0.257, timeline.StepState, timeline.StateSynSent, timeline.StateEstablished),
		step(0.9, timeline.StepState, timeline.StateEstablished, timeline.StateFinWait1),
		step(1.1, timeline.StepState, timeline.StateFinWait1, timeline.StateFinWait2),
		tw,
	}

	refused := base(4098, timeline.RoleClient, timeline.OutcomeRefused, 0.09)
	refused.RSTReceived = true
	refused.Reason = timeline.ReasonNothingListening
	refused.Errno = uint16(syscall.ECONNREFUSED)
	refused.States = []timeline.State{timeline.StateSynSent, timeline.StateClose}
	errStep := step(0.09, timeline.StepError, timeline.StateClose, timeline.StateClose)
	errStep.Errno = uint16(syscall.ECONNREFUSED)
	refused.Steps = []timeline.Step{
		step(0, timeline.StepState, timeline.StateClose, timeline.StateSynSent),
		step(0.08, timeline.StepRSTReceived, timeline.StateSynSent, timeline.StateSynSent),
		step(0.09, timeline.StepState, timeline.StateSynSent, timeline.StateClose),
		errStep,
	}

	timeout := base(4099, timeline.RoleClient, timeline.OutcomeTimeout, 7003)
	timeout.RAddr, timeout.LAddr = v6, v6
	timeout.SynRetries = 2
	timeout.Reason = timeline.ReasonSynTimeout
	timeout.Errno = uint16(syscall.ETIMEDOUT)
	timeout.States = []timeline.State{timeline.StateSynSent, timeline.StateClose}
	r1 := step(1001, timeline.StepSynRetransmit, timeline.StateSynSent, timeline.StateSynSent)
	r1.N, r1.Since = 1, 1001*msec
	r2 := step(3002, timeline.StepSynRetransmit, timeline.StateSynSent, timeline.StateSynSent)
	r2.N, r2.Since = 2, 2001*msec
	timeout.Steps = []timeline.Step{
		step(0, timeline.StepState, timeline.StateClose, timeline.StateSynSent), r1, r2,
		step(7003, timeline.StepState, timeline.StateSynSent, timeline.StateClose),
	}

	reset := base(4100, timeline.RoleServer, timeline.OutcomeResetLocal, 3.5)
	reset.LPort, reset.RPort = 8080, 41231
	reset.Comm = "nginx"
	reset.RSTSent = true
	reset.Reason = timeline.ReasonUnreadData
	reset.RSTReason = "TCP_ABORT_ON_CLOSE"
	reset.SynAckRetries = 1
	reset.States = []timeline.State{timeline.StateSynRecv, timeline.StateEstablished, timeline.StateClose}
	sa := step(0, timeline.StepSynAckRetransmit, timeline.StateSynRecv, timeline.StateSynRecv)
	sa.N = 1
	rst := step(3.5, timeline.StepRSTSent, timeline.StateClose, timeline.StateClose)
	rst.RSTReason = "TCP_ABORT_ON_CLOSE"
	reset.Steps = []timeline.Step{sa,
		step(1.0, timeline.StepState, timeline.StateListen, timeline.StateSynRecv),
		step(1.0, timeline.StepState, timeline.StateSynRecv, timeline.StateEstablished),
		step(3.5, timeline.StepState, timeline.StateEstablished, timeline.StateClose),
		rst,
	}

	// A process may name itself anything, escape sequences included.
	partial := base(4101, timeline.RoleUnknown, timeline.OutcomeOpen, 20)
	partial.Comm = "evil\x1b[2J\xff\"x"
	partial.Partial, partial.Evicted, partial.Incomplete = true, true, true
	partial.Reason = timeline.ReasonOpen
	partial.Retransmits = 1
	partial.States = []timeline.State{timeline.StateEstablished}
	re := step(20, timeline.StepRetransmit, timeline.StateEstablished, timeline.StateEstablished)
	re.N = 1
	partial.Steps = []timeline.Step{re}

	// Older than tracing, its role worked out from the listener on 8080.
	inferred := base(4104, timeline.RoleServer, timeline.OutcomeOpen, 0)
	inferred.LPort, inferred.RPort = 8080, 41250
	inferred.Comm = "nginx"
	inferred.Partial, inferred.RoleInferred = true, true
	inferred.Reason = timeline.ReasonOpen
	inferred.States = []timeline.State{timeline.StateEstablished}
	return []*timeline.Connection{closed, refused, timeout, reset, partial, inferred}
}

func render(t *testing.T, w Writer) {
	cs := sample()
	cs[1].Cgroup, cs[2].Cgroup, cs[3].Cgroup = 88, 99, 66
	for _, c := range cs {
		if err := w.Connection(c); err != nil {
			t.Fatal(err)
		}
	}
	ev := &timeline.Event{Time: t0, Cookie: 4098, Type: timeline.EventRSTSent, NewState: timeline.StateClose,
		LAddr: netip.MustParseAddr("127.0.0.1"), RAddr: netip.MustParseAddr("127.0.0.1"), LPort: 8080, RPort: 41230,
		PID: 812, Comm: "curl", RSTReason: "TCP_STATE", Cgroup: 88}
	w.Event(ev)
	w.Lost(time.Unix(0, t0), 12, 30)
	stuck := &timeline.Alert{Time: t0 + 31e9, Kind: timeline.AlertCloseWait, Cookie: 4102,
		LAddr: ev.LAddr, RAddr: ev.RAddr, LPort: 8080, RPort: 41240, PID: 812, Comm: "nginx",
		State: timeline.StateCloseWait, Since: t0, Cgroup: 99}
	w.Alert(stuck)
	ended := *stuck
	ended.Kind, ended.State, ended.Ended, ended.Time = timeline.AlertFinWait2OrphanEnded, timeline.StateFinWait2, "dropped", t0+60e9
	w.Alert(&ended)
	lo := netip.MustParseAddr("127.0.0.1")
	w.TimeWait(time.Unix(0, t0), 3, []timeline.EndpointCount{{Endpoint: timeline.Endpoint{Addr: lo, Port: 8080}, Count: 3}})
	st := timeline.Stats{Events: 40, Connections: 5, Evicted: 1, Alerts: 2,
		ByReason: map[string]uint64{"closed_local": 1, "nothing_listening": 1}}
	st.Handshakes.Add(257e3)
	st.Handshakes.Add(1e6)
	sum := NewSummary(st)
	sum.ByOutcome["closed"], sum.ByOutcome["refused"] = 1, 1
	sum.Duration, sum.LostEvents = 9*time.Second, 30
	sum.Paired = 2
	sum.TopFailures = []timeline.EndpointCount{{Endpoint: timeline.Endpoint{Addr: lo, Port: 9999}, Count: 4}}
	sum.TimeWaitKnown, sum.TimeWaitTotal = true, 3
	sum.TimeWaitTop = []timeline.EndpointCount{{Endpoint: timeline.Endpoint{Addr: lo, Port: 8080}, Count: 3}}
	if err := w.Summary(sum); err != nil {
		t.Fatal(err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./output -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file (go test ./output -update rewrites it):\n%s", name, got)
	}
}

func TestTextGolden(t *testing.T) {
	var buf bytes.Buffer
	render(t, NewText(&buf, time.UTC, Options{CgroupPath: cgroupName, Container: containerOf}))
	golden(t, "text.golden", buf.Bytes())
	checkLines(t, buf.Bytes())
	for _, line := range strings.Split(buf.String(), "\n") {
		for _, r := range line {
			if r < 0x20 && r != '\t' {
				t.Errorf("control character %q reached the terminal: %q", r, line)
			}
		}
	}
}

func TestJSONGolden(t *testing.T) {
	var buf bytes.Buffer
	render(t, NewJSON(&buf, Options{CgroupPath: cgroupName, Container: containerOf}))
	golden(t, "json.golden", buf.Bytes())
}

// Every line is valid JSON and connection records carry the documented
// schema.
func TestJSONSchema(t *testing.T) {
	var buf bytes.Buffer
	render(t, NewJSON(&buf, Options{Container: containerOf}))
	required := []string{"schema_version", "container", "type", "cookie", "start", "end", "duration_ms", "family", "laddr", "lport", "raddr",
		"rport", "role", "pid", "comm", "netns", "outcome", "closed_by", "handshake_ms", "syn_retries",
		"synack_retries", "retransmits", "rst_sent", "rst_received", "partial", "states", "timeline",
		"uid", "cgroup", "reason", "explanation", "bytes_sent", "bytes_received", "segs_retransmitted",
		"srtt_ms", "handshake_rtt_ms", "incomplete", "role_inferred", "peer_cookie"}
	types := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		types[m["type"].(string)]++
		if prefix := fmt.Sprintf(`{"schema_version":%d,"type":`, SchemaVersion); !bytes.HasPrefix(line, []byte(prefix)) {
			t.Errorf("line does not start with %s: %s", prefix, line)
		}
		if c, ok := m["container"]; ok && c != nil {
			keys := []string{}
			for k := range c.(map[string]any) {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if want := []string{"id", "name", "namespace", "pod", "pod_uid", "runtime"}; !slices.Equal(keys, want) {
				t.Errorf("container has %v, want %v: %s", keys, want, line)
			}
		}
		if m["type"] == "event" || m["type"] == "alert" {
			if _, ok := m["container"]; !ok {
				t.Errorf("%s lacks container: %s", m["type"], line)
			}
		}
		if m["type"] != "connection" {
			continue
		}
		for _, k := range required {
			if _, ok := m[k]; !ok {
				t.Errorf("connection record lacks %q: %s", k, line)
			}
		}
		for _, s := range m["timeline"].([]any) {
			ev := s.(map[string]any)["event"].(string)
			switch ev {
			case "state", "syn_retransmit", "synack_retransmit", "retransmit", "rst_sent", "rst_received", "error":
			default:
				t.Errorf("unknown timeline event %q", ev)
			}
		}
		if c, _ := m["container"].(map[string]any); c != nil && c["runtime"] == "docker" && c["name"] != "evil\x1b[2J\"" {
			t.Errorf("container name round-trip: %q", c["name"])
		}
		if m["cookie"].(float64) == 4101 && m["comm"] != "evil\x1b[2J\ufffd\"x" {
			t.Errorf("comm round-trip: %q", m["comm"])
		}
	}
	if types["connection"] != 6 || types["event"] != 1 || types["lost"] != 1 || types["summary"] != 1 ||
		types["alert"] != 2 || types["time_wait"] != 1 {
		t.Errorf("line types %v", types)
	}
}

// A closed pipe surfaces as an error from every later call (sticky).
func TestStickyError(t *testing.T) {
	w := NewJSON(failWriter{}, Options{})
	w.Connection(sample()[0])
	if err := w.Flush(); err == nil {
		t.Fatal("no error from a failing writer")
	}
	if err := w.Summary(NewSummary(timeline.Stats{})); err == nil {
		t.Fatal("error not sticky")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

func TestCompactJSON(t *testing.T) {
	var full, compact bytes.Buffer
	c := benchRecords()[0]
	f := NewJSON(&full, Options{})
	f.Connection(c)
	f.Flush()
	j := NewJSON(&compact, Options{Compact: true})
	j.Connection(c)
	j.Flush()
	t.Logf("a clean client record: %d bytes, compact %d", full.Len(), compact.Len())
	if compact.Len() >= full.Len() || compact.Len() == 0 {
		t.Fatalf("compact %d bytes, full %d", compact.Len(), full.Len())
	}
	var a, b map[string]any
	if err := json.Unmarshal(full.Bytes(), &a); err != nil {
		t.Fatalf("full: %v", err)
	}
	if err := json.Unmarshal(compact.Bytes(), &b); err != nil {
		t.Fatalf("compact: %v\n%s", err, compact.Bytes())
	}
	// Every member kept is the full line's; every one left out is empty.
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			switch x := v.(type) {
			case nil:
			case bool:
				if x {
					t.Errorf("%s=true left out", k)
				}
			case float64:
				if x != 0 {
					t.Errorf("%s=%v left out", k, x)
				}
			case string:
				if x != "" {
					t.Errorf("%s=%q left out", k, x)
				}
			case []any:
				if len(x) != 0 {
					t.Errorf("%s left out", k)
				}
			case map[string]any:
				if len(x) != 0 {
					t.Errorf("%s left out", k)
				}
			}
			continue
		}
		if fmt.Sprint(v) != fmt.Sprint(w) {
			t.Errorf("%s: %v became %v", k, v, w)
		}
	}
	if b["schema_version"] == nil || b["type"] != "connection" {
		t.Errorf("compact line lacks schema_version or type: %s", compact.Bytes())
	}
}
