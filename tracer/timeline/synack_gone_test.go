package timeline

import "testing"

// A handshake whose final ACK never comes: the listener retransmits its
// SYN+ACK (tcp_synack_retries=2: at 1 s and 3 s after the first), and the
// kernel drops the request socket at 7 s.

const synAckListener = uint64(7)

func synAckRetry(t int64) Event {
	return serverSide(other(t, synAckListener, EventSynAckRetransmit, StateSynRecv))
}

// requestSocket is the request socket as a scan reports it.
func requestSocket() *Socket {
	return &Socket{Cookie: 99, State: StateNewSynRecv, LAddr: lo, RAddr: lo, LPort: srvPort, RPort: cliPort, NetNS: 1}
}

type alertLog struct{ alerts []Alert }

func synAckCorrelator(scanNetNS uint32) (*Correlator, *alertLog) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 2e9
	cfg.ScansNetNS = func(ns uint32) bool { return ns == scanNetNS }
	c := New(cfg, func(*Connection) {})
	log := &alertLog{}
	c.OnAlert(func(a *Alert) { log.alerts = append(log.alerts, *a) })
	c.SetSysctls(Sysctls{NetNS: 1, SynRetries: 6, SynAckRetries: 2, SynLinearTimeouts: -1, FinTimeout: 60})
	for _, e := range []Event{synAckRetry(1000), synAckRetry(3000)} {
		c.Add(&e)
	}
	return c, log
}

// scanAt runs a scan at t ms that sees the request socket or not.
func scanAt(c *Correlator, t int64, present bool) {
	c.Advance(baseTime + t*ms)
	c.BeginScan()
	if present {
		c.ScanSocket(requestSocket())
	}
	c.EndScan(baseTime + t*ms)
}

func TestSynRecvAlertEndsWhenScansMissTheRequest(t *testing.T) {
	c, log := synAckCorrelator(1)
	if !c.WantsScan() {
		t.Fatal("a followed handshake does not ask for scans")
	}
	scanAt(c, 3100, true)
	scanAt(c, 4100, true)
	scanAt(c, 6100, true)
	if len(log.alerts) != 2 || log.alerts[0].Ended != "" || log.alerts[1].Retries != 2 {
		t.Fatalf("want two syn_recv alerts while the request lives, got %+v", log.alerts)
	}
	scanAt(c, 7100, false) // gone, or accepted with its events on their way
	if len(log.alerts) != 2 {
		t.Fatalf("ended on the first scan that missed it: %+v", log.alerts)
	}
	scanAt(c, 8100, false)
	if len(log.alerts) != 3 {
		t.Fatalf("want one ended alert once two scans missed it, got %+v", log.alerts)
	}
	a := log.alerts[2]
	if a.Kind != AlertSynRecv || a.Ended != "dropped" || a.Retries != 2 || a.Time != baseTime+8100*ms ||
		a.Since != baseTime+1000*ms || a.LPort != srvPort || a.RPort != cliPort {
		t.Errorf("ended alert %+v", a)
	}
	for tm := int64(9100); tm < 20000; tm += 1000 {
		scanAt(c, tm, false)
	}
	if len(log.alerts) != 3 || c.WantsScan() {
		t.Errorf("alerts went on after the end (%d), or scans still wanted (%v)", len(log.alerts), c.WantsScan())
	}
	if got := c.Stats().Alerts; got != 3 {
		t.Errorf("stats count %d alerts, want 3", got)
	}
}

// The final ACK came just before a scan: the accepted socket's events
// arrive after the scan that missed the request; no end is announced.
func TestSynRecvAcceptedBetweenScans(t *testing.T) {
	c, log := synAckCorrelator(1)
	scanAt(c, 3100, true)
	scanAt(c, 4100, false)
	for _, e := range []Event{
		serverSide(state(4150, 2, StateListen, StateSynRecv)),
		serverSide(state(4150, 2, StateSynRecv, StateEstablished)),
	} {
		c.Add(&e)
	}
	scanAt(c, 5100, false)
	for _, a := range log.alerts {
		if a.Ended != "" {
			t.Errorf("an accepted handshake was announced ended: %+v", a)
		}
	}
	if c.WantsScan() {
		t.Error("still following a handshake that was accepted")
	}
}

// Where scans do not reach (another namespace, or before any scan ran),
// the retry budget tells: the request is dropped 2 + 4 s after the first
// retry.
func TestSynRecvAlertEndsOnTheRetryBudget(t *testing.T) {
	c, log := synAckCorrelator(0)
	if c.WantsScan() {
		t.Error("asks for scans that cannot see the request")
	}
	for tm := int64(3000); tm <= 7900; tm += 100 {
		c.Advance(baseTime + tm*ms)
	}
	for _, a := range log.alerts {
		if a.Ended != "" {
			t.Fatalf("ended before the kernel's budget ran out: %+v", a)
		}
	}
	n := len(log.alerts)
	if n == 0 {
		t.Fatal("no syn_recv alert while the request lived")
	}
	for tm := int64(8000); tm <= 20000; tm += 100 {
		c.Advance(baseTime + tm*ms)
	}
	if len(log.alerts) != n+1 || log.alerts[n].Ended != "dropped" {
		t.Fatalf("want one ended alert after the budget, got %+v", log.alerts[n:])
	}
	if at := log.alerts[n].Time - baseTime; at < 8000*ms || at > 9100*ms {
		t.Errorf("ended at %d ms, want 8 to 9 s (7 s and 1 s of grace)", at/ms)
	}
}

// A handshake dropped before it was alerted on goes quietly.
func TestSynRecvNotAlertedEndsQuietly(t *testing.T) {
	c, log := synAckCorrelator(1)
	scanAt(c, 2000, false)
	scanAt(c, 2900, false)
	if len(log.alerts) != 0 || c.WantsScan() {
		t.Errorf("alerts %+v, wants scans %v", log.alerts, c.WantsScan())
	}
}
