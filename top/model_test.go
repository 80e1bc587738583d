package top

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

var update = flag.Bool("update", false, "rewrite the golden screens in testdata")

const (
	sec  = int64(1e9)
	ms   = int64(1e6)
	base = int64(1_800_000_000) * sec // 2027-01-15T08:00:00Z
)

var (
	lo    = netip.MustParseAddr("127.0.0.1")
	peer  = netip.MustParseAddr("10.0.0.7")
	nginx = Conn{PID: 300, Comm: "nginx", Role: timeline.RoleServer, LPort: 8080, RPort: 40001, RAddr: peer, Cgroup: 7}
	curl  = Conn{PID: 812, Comm: "curl", Role: timeline.RoleClient, LPort: 41230, RPort: 5432, RAddr: lo}
)

// refused is the record of a connect() refused at t.
func refused(t int64, cookie uint64, port uint16) *timeline.Connection {
	return &timeline.Connection{Cookie: cookie, Start: t, End: t + ms, LAddr: lo, RAddr: lo, LPort: port, RPort: 5432,
		NetNS: 1, Role: timeline.RoleClient, PID: 812, Comm: "curl", Outcome: timeline.OutcomeRefused,
		Handshake: -1, RSTReceived: true, Errno: 111, Reason: "refused",
		States: []timeline.State{timeline.StateSynSent, timeline.StateClose},
		Steps: []timeline.Step{
			{Time: t, Kind: timeline.StepState, From: timeline.StateClose, To: timeline.StateSynSent},
			{Time: t + ms, Kind: timeline.StepRSTReceived, From: timeline.StateSynSent, To: timeline.StateSynSent},
			{Time: t + ms, Kind: timeline.StepState, From: timeline.StateSynSent, To: timeline.StateClose, Errno: 111},
		}}
}

func live(c Conn, cookie uint64, st timeline.State, since int64) *timeline.LiveConn {
	return &timeline.LiveConn{Cookie: cookie, PID: c.PID, Comm: c.Comm, Cgroup: c.Cgroup, Role: c.Role,
		LAddr: lo, RAddr: c.RAddr, LPort: c.LPort, RPort: c.RPort, State: st, Since: since}
}

// scene is a model fed 10 s of synthetic life: nginx with a CLOSE_WAIT
// leak, curl refused twice a second, a busy client with handshakes and
// retransmissions, and an alert.
func scene(t *testing.T) (*Model, int64) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Container = func(cg uint64) *containers.Info {
		if cg == 7 {
			return &containers.Info{ID: "0123456789abcdef", Name: "web", Pod: "web-1", Namespace: "shop"}
		}
		return nil
	}
	m := New(cfg, base)
	client := Conn{PID: 900, Comm: "app\x1b[2J", Role: timeline.RoleClient, LPort: 50000, RPort: 443,
		RAddr: netip.MustParseAddr("192.0.2.10")}
	for i := range int64(10) {
		now := base + i*sec
		m.Record(refused(now, uint64(100+i), uint16(41000+i)), now)
		m.Record(refused(now+500*ms, uint64(200+i), uint16(42000+i)), now+500*ms)
		m.Count(NewConn, &curl, now)
		m.Count(NewConn, &curl, now+500*ms)
		for j := range int64(5) {
			m.Count(NewConn, &client, now+j*100*ms)
			m.Handshake(&client, (j+1)*ms, now+j*100*ms)
		}
		m.Count(Retrans, &client, now)
		m.Count(NewConn, &nginx, now)
	}
	m.Alert(&timeline.Alert{Time: base + 9*sec, Kind: timeline.AlertCloseWait, LAddr: lo, LPort: 8080, RAddr: peer,
		RPort: 40001, PID: 300, Comm: "nginx", State: timeline.StateCloseWait, Since: base - 21*sec})
	now := base + 10*sec
	return m, now
}

func feedLive(m *Model, g GroupBy, now int64) {
	m.BeginLive(g)
	m.Live(g, live(nginx, 1, timeline.StateCloseWait, base-21*sec), now)
	m.Live(g, live(nginx, 2, timeline.StateCloseWait, base-5*sec), now)
	m.Live(g, live(nginx, 3, timeline.StateEstablished, base), now)
	m.Live(g, live(Conn{PID: 900, Comm: "app\x1b[2J", Role: timeline.RoleClient, LPort: 50001, RPort: 443,
		RAddr: netip.MustParseAddr("192.0.2.10")}, 4, timeline.StateEstablished, base), now)
}

func TestTopRatesAndRows(t *testing.T) {
	m, now := scene(t)
	feedLive(m, ByProcess, now)
	s := m.Snapshot(ByProcess, now, Counts{})
	if len(s.Rows) != 3 {
		t.Fatalf("%d rows, want 3: %+v", len(s.Rows), s.Rows)
	}
	// Worst first: nginx has a connection stuck for 31 s (> 30 s).
	r := s.Rows[0]
	if r.Key != "nginx[300]" || r.Stuck != 1 || r.CloseWait != 2 || r.Established != 1 ||
		r.OldestState != "CLOSE_WAIT" || r.OldestMS != 31000 {
		t.Errorf("first row %+v, want nginx[300] with 2 CLOSE_WAIT, the oldest 31 s", r)
	}
	// curl: 2 refused/s over the 5 s window (at 10 s: 4 s and 5 s to 9.5 s).
	r = s.Rows[1]
	if r.Key != "curl[812]" || r.Refused != 2 || r.New != 2 || len(r.Records) != 8 ||
		r.Records[0].Cookie != 209 || r.Records[7].Cookie != 106 {
		t.Errorf("second row %+v (records %d), want curl[812] refused 2/s, its 8 newest records newest first", r, len(r.Records))
	}
	r = s.Rows[2]
	if r.Key != "app?[2J[900]" || r.New != 5 || r.Retrans != 1 || r.HandshakeN != 50 || r.P50MS != 3 || r.P99MS != 5 {
		t.Errorf("third row %+v, want the client's 5 new/s, 1 retrans/s, handshakes p50 3 ms p99 5 ms", r)
	}
	if s.Counts.Open != 4 || len(s.Alerts) != 1 || s.Alerts[0].Owner != "nginx[300]" {
		t.Errorf("open %d, alerts %+v", s.Counts.Open, s.Alerts)
	}
}

func TestTopGroupings(t *testing.T) {
	m, now := scene(t)
	want := map[GroupBy][]string{
		ByProcess:   {"nginx[300]", "curl[812]", "app?[2J[900]"},
		ByContainer: {"web", "(host)"},
		ByPod:       {"shop/web-1", "(no pod)"},
		ByPort:      {":8080", "→:5432", "→:443"},
		ByRemote:    {"10.0.0.7", "127.0.0.1:5432", "192.0.2.10:443"},
	}
	for g := range numGroupBy {
		feedLive(m, g, now)
		s := m.Snapshot(g, now, Counts{})
		var keys []string
		for _, r := range s.Rows {
			keys = append(keys, r.Key)
		}
		if strings.Join(keys, ",") != strings.Join(want[g], ",") {
			t.Errorf("by %v: rows %q, want %q", g, keys, want[g])
		}
	}
}

func TestTopSorting(t *testing.T) {
	m, now := scene(t)
	feedLive(m, ByProcess, now)
	s := m.Snapshot(ByProcess, now, Counts{})
	order := func(sort int, rev bool) string {
		v := View{Sort: sort, Reverse: rev}
		var keys []string
		for _, r := range v.Rows(s) {
			keys = append(keys, r.Key)
		}
		return strings.Join(keys, ",")
	}
	ref, _ := ParseSort("ref/s")
	newS, _ := ParseSort("new/s")
	for _, c := range []struct {
		sort int
		rev  bool
		want string
	}{
		{SortWorst, false, "nginx[300],curl[812],app?[2J[900]"},
		{SortKey, false, "app?[2J[900],curl[812],nginx[300]"},
		{ref, false, "curl[812],app?[2J[900],nginx[300]"},
		{newS, false, "app?[2J[900],curl[812],nginx[300]"},
		{newS, true, "nginx[300],curl[812],app?[2J[900]"},
	} {
		if got := order(c.sort, c.rev); got != c.want {
			t.Errorf("sort %s reversed %v: %s, want %s", SortName(c.sort), c.rev, got, c.want)
		}
	}
}

// The groups are bounded: past MaxGroups the least recently active goes.
func TestTopGroupsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxGroups = 10
	m := New(cfg, base)
	for i := range 25 {
		c := Conn{PID: uint32(i + 1), Comm: "p"}
		m.Count(NewConn, &c, base+int64(i)*ms)
	}
	s := m.Snapshot(ByProcess, base+sec, Counts{})
	if len(s.Rows) != 10 || s.GroupsDropped != 15 {
		t.Fatalf("%d rows, %d dropped; want 10 and 15", len(s.Rows), s.GroupsDropped)
	}
	for _, r := range s.Rows {
		if r.Key < "p[16]" && len(r.Key) == 5 {
			t.Errorf("kept %s, one of the oldest", r.Key)
		}
	}
}

func TestTopAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Microsecond: "850µs", 12 * time.Millisecond: "12ms", 1200 * time.Millisecond: "1.2s",
		42 * time.Second: "42s", 192 * time.Second: "3m12s", 2*time.Hour + 5*time.Minute: "2h05m",
		76 * time.Hour: "3d04h",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
}

// Golden screens: the scene at 80x24 and 120x40, the table and the
// detail view. -update rewrites them.
func TestTopGoldenScreens(t *testing.T) {
	for _, c := range []struct {
		name string
		w, h int
		view View
	}{
		{"table-80x24", 80, 24, View{}},
		{"table-120x40", 120, 40, View{}},
		{"detail-80x24", 80, 24, View{Selected: "curl[812]", Detail: true, Record: 1}},
		{"detail-120x40", 120, 40, View{Selected: "curl[812]", Detail: true}},
		{"paused-by-port-80x24", 80, 24, View{Paused: true, Sort: SortKey, Selected: "→:5432"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, now := scene(t)
			g := ByProcess
			if strings.Contains(c.name, "by-port") {
				g = ByPort
			}
			feedLive(m, g, now)
			s := m.Snapshot(g, now, Counts{Events: 1234, Lost: 2, Evicted: 1, Records: 20, Alerts: 1, TimeWait: 17,
				TimeWaitKnown: true})
			got := Render(s, &c.view, &Screen{Width: c.w, Height: c.h, Loc: time.UTC})
			checkSize(t, got, c.w, c.h)
			golden(t, c.name, got)
		})
	}
}

func checkSize(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		t.Errorf("%d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := len([]rune(l)); n > w {
			t.Errorf("line %d is %d wide, more than %d: %q", i+1, n, w, l)
		}
		if strings.ContainsRune(l, 0x1b) {
			t.Errorf("line %d has an escape character: %q", i+1, l)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./top -run Golden -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("screen differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// A palette colours whole lines; without one nothing is coloured.
func TestTopPalette(t *testing.T) {
	m, now := scene(t)
	feedLive(m, ByProcess, now)
	s := m.Snapshot(ByProcess, now, Counts{})
	mark := func(tag string) func(string) string { return func(s string) string { return "<" + tag + ">" + s } }
	sc := &Screen{Width: 80, Height: 24, Loc: time.UTC,
		Palette: Palette{Title: mark("t"), Heading: mark("h"), Selected: mark("s"), Bad: mark("b"), Dim: mark("d")}}
	got := Render(s, &View{Selected: "app?[2J[900]"}, sc)
	for _, want := range []string{"<t>tcptrace top", "<h> GROUP", "<b> nginx[300]", "<s>>app?[2J[900]", "<b>08:00:09 close_wait"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
}

// What the model costs per connection: its start counted, its handshake,
// its record kept, under every grouping (make bench measures it all).
func BenchmarkTopConnection(b *testing.B) {
	m := New(DefaultConfig(), base)
	c := refused(base, 1, 40000)
	c.Outcome = timeline.OutcomeClosed
	b.ReportAllocs()
	for i := range b.N {
		now := base + int64(i)*1000
		m.Count(NewConn, &curl, now)
		m.Handshake(&curl, ms, now)
		m.Record(c, now)
	}
}

// A connection handed to TIME_WAIT counts for 60 s; rates fall to zero
// once their events are out of the window.
func TestTopTimeWaitAndRatesExpire(t *testing.T) {
	m := New(DefaultConfig(), base)
	c := refused(base, 1, 40000)
	c.Outcome = timeline.OutcomeClosed
	c.Steps = append(c.Steps, timeline.Step{Time: base, Kind: timeline.StepState, From: timeline.StateFinWait2,
		To: timeline.StateTimeWait, TimewaitSocket: true})
	m.Record(c, base)
	m.Count(NewConn, &curl, base)
	row := func(at int64) Row {
		t.Helper()
		s := m.Snapshot(ByProcess, base+at, Counts{})
		if len(s.Rows) != 1 {
			t.Fatalf("%d rows", len(s.Rows))
		}
		return s.Rows[0]
	}
	if r := row(2 * sec); r.TimeWait != 1 || r.New != 0.5 {
		t.Errorf("at 2 s: TIME_WAIT %d, new %.2f/s; want 1 and 0.5 (1 over 2 s)", r.TimeWait, r.New)
	}
	if r := row(6 * sec); r.New != 0 || r.TimeWait != 1 {
		t.Errorf("at 6 s: new %.2f/s, TIME_WAIT %d; want 0 (out of the 5 s window) and 1", r.New, r.TimeWait)
	}
	if r := row(61 * sec); r.TimeWait != 0 {
		t.Errorf("at 61 s: TIME_WAIT %d, want 0", r.TimeWait)
	}
}
