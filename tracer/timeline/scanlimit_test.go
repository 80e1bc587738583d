package timeline

import (
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Failed calls in a tight loop: the socket scans behind their explanations
// are rate-limited per namespace, and a failure past the limit says so
// rather than quoting an earlier scan.

// maxScansIn is the most scans a namespace's budget allows over span ns:
// a burst, then one every scanEvery of event time.
func maxScansIn(span int64) int {
	return scanBurst + int(span/scanEvery)
}

// connectFailed is a connect() that found no free local port at t ns.
func connectFailed(t int64, cookie uint64, netns uint32) []Event {
	open := with(state(0, cookie, StateClose, StateSynSent), func(e *Event) { e.Time = t; e.NetNS = netns })
	fail := with(open, func(e *Event) {
		e.Type, e.Syscall, e.Errno, e.NewState = EventSyscallError, SyscallConnect, uint16(syscall.EADDRNOTAVAIL), StateClose
	})
	closed := with(open, func(e *Event) { e.OldState, e.NewState = StateSynSent, StateClose })
	return []Event{open, fail, closed}
}

func TestPortUseScansRateLimited(t *testing.T) {
	const n, every = 5000, 200_000 // 1 s of failures, one every 200 µs
	scans := map[uint32]int{}
	cfg := DefaultConfig()
	// Each scan finds one more socket towards the destination than the
	// last: a count quoted from an earlier scan would show.
	cfg.ScanNetNS = func(netns uint32, fn func(*Socket)) error {
		scans[netns]++
		for range scans[netns] {
			fn(&Socket{RAddr: lo, RPort: srvPort, State: StateTimeWait})
		}
		return nil
	}
	var recs []*Connection
	c := New(cfg, func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.SetSysctls(Sysctls{NetNS: 1, LocalPorts: [2]uint16{40000, 40001}})
	add := func(evs []Event) {
		for i := range evs {
			c.Add(&evs[i])
		}
	}
	for i := range n {
		add(connectFailed(baseTime+int64(i)*every, uint64(i+1), 1))
	}
	// Another namespace's first failure, while the first's is limited.
	add(connectFailed(baseTime+n*every, n+1, 2))
	c.Flush()
	if len(recs) != n+1 {
		t.Fatalf("%d records, want %d", len(recs), n+1)
	}
	slices.SortFunc(recs, func(a, b *Connection) int { return int(a.Cookie - b.Cookie) })

	if most := maxScansIn(n * every); scans[1] > most || scans[1] < 2 {
		t.Errorf("%d scans for %d failures, want 2..%d", scans[1], n, most)
	}
	known := 0
	for _, r := range recs[:n] {
		u, e := r.PortUse, r.Explanation()
		switch {
		case u.Known:
			known++
			// The k-th scan finds k sockets: this record's own scan.
			if u.NotRescanned || u.InUse != known || u.Range != 2 {
				t.Fatalf("record %d: %+v, want the count of scan %d", r.Cookie, u, known)
			}
		case !u.NotRescanned || u.InUse != 0 || u.TimeWait != 0 || u.Range != 2:
			t.Fatalf("record %d: %+v, want not rescanned", r.Cookie, u)
		case strings.Contains(e, " in use towards") || !strings.Contains(e, "ip_local_port_range has 2 ports; ports in use not counted: this namespace's sockets were just scanned"):
			t.Fatalf("record %d says %q", r.Cookie, e)
		}
	}
	if known != scans[1] {
		t.Errorf("%d records counted, %d scans", known, scans[1])
	}
	if !recs[0].PortUse.Known || recs[n-1].PortUse.Known && recs[n-2].PortUse.Known {
		t.Errorf("the first failure should be scanned, a tight loop's later ones not all: %+v, %+v", recs[0].PortUse, recs[n-1].PortUse)
	}
	if u := recs[n].PortUse; !u.Known || u.InUse != 1 || scans[2] != 1 {
		t.Errorf("the other namespace's first failure: %+v, %d scans", u, scans[2])
	}
}

// bindFailed is a bind() that met EADDRINUSE on port 7005 at t ns.
func bindFailed(t int64) *Event {
	return &Event{Time: t, Type: EventSyscallError, Syscall: SyscallBind, Errno: uint16(syscall.EADDRINUSE),
		LAddr: lo, LPort: 7005, NetNS: 1, PID: 42, Comm: "server"}
}

func TestPortHoldersRateLimited(t *testing.T) {
	const every = 100_000 // a failure every 100 µs
	scans, listening := 0, true
	cfg := DefaultConfig()
	cfg.ScanNetNS = func(netns uint32, fn func(*Socket)) error {
		scans++
		s := Socket{Cookie: 9, LAddr: lo, LPort: 7005, State: StateTimeWait}
		if listening {
			s.State = StateListen
		}
		fn(&s)
		return nil
	}
	c := New(cfg, func(*Connection) {})
	var alerts []Alert
	c.OnAlert(func(a *Alert) { alerts = append(alerts, *a) })
	// The listener holds the port for 1 s of failures; then it is gone and
	// TIME_WAIT holds it for 12 s more (past callAlertEvery).
	now := baseTime
	for ; now < baseTime+1e9; now += every {
		c.Add(bindFailed(now))
	}
	gone := now
	listening = false
	for ; now < gone+12e9; now += every {
		c.Add(bindFailed(now))
	}
	if most := maxScansIn(now - baseTime); scans > most {
		t.Errorf("%d scans for %d failures, want at most %d", scans, (now-baseTime)/every, most)
	}
	if len(alerts) == 0 || len(alerts[0].Holders.Listeners) != 1 {
		t.Fatalf("the first failure should name the listener: %+v", alerts)
	}
	limited, timeWait := 0, 0
	for _, a := range alerts {
		h, e := a.Holders, string(AppendAlertExplanation(nil, &a))
		switch {
		case h.NotRescanned:
			limited++
			if h.Known || len(h.Listeners) > 0 || h.TimeWait > 0 || h.Other > 0 ||
				!strings.HasSuffix(e, "failed with EADDRINUSE: who holds the port was not looked at: this namespace's sockets were just scanned for earlier failures and are not scanned again so soon (rate limit)") {
				t.Errorf("rate-limited alert: %+v: %q", h, e)
			}
		case a.Time >= gone && len(h.Listeners) > 0:
			t.Errorf("alert at +%d ms names the listener gone at +%d ms: %q", (a.Time-baseTime)/1e6, (gone-baseTime)/1e6, e)
		case h.TimeWait > 0:
			timeWait++
		}
	}
	if limited == 0 || timeWait == 0 {
		t.Errorf("%d rate-limited alerts, %d naming TIME_WAIT: want both", limited, timeWait)
	}
}

func TestScanBudgetsBounded(t *testing.T) {
	scans := 0
	cfg := DefaultConfig()
	cfg.ScanNetNS = func(uint32, func(*Socket)) error { scans++; return nil }
	c := New(cfg, func(*Connection) {})
	// A failure in each of 3000 namespaces at once: each is its first, so
	// each is scanned; the budgets kept stay bounded.
	for ns := range uint32(3000) {
		e := bindFailed(baseTime)
		e.NetNS = ns + 1
		c.Add(e)
	}
	if scans != 3000 || len(c.scanBudgets) > maxScanBudgets {
		t.Errorf("%d scans, %d budgets kept", scans, len(c.scanBudgets))
	}
}
