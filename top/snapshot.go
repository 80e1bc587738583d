package top

import (
	"slices"
	"time"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// States shown per group, in column order.
var shownStates = [...]timeline.State{timeline.StateEstablished, timeline.StateSynSent, timeline.StateSynRecv,
	timeline.StateCloseWait, timeline.StateFinWait2, timeline.StateTimeWait}

const numStates = 16 // the kernel's TCP states fit in 4 bits

// Alert is an alert as the alerts pane shows it.
type Alert struct {
	Time    time.Time     `json:"time"`
	Kind    string        `json:"kind"`
	State   string        `json:"state"`
	For     time.Duration `json:"-"`
	ForMS   int64         `json:"for_ms"`
	Owner   string        `json:"process"`
	Local   string        `json:"local"`
	Remote  string        `json:"remote"`
	Ended   string        `json:"ended,omitempty"`
	Retries int           `json:"retries,omitempty"`
}

// Alert takes an alert as it fires; a is not kept.
func (m *Model) Alert(a *timeline.Alert) {
	al := Alert{Time: time.Unix(0, a.Time), Kind: a.Kind.String(), State: a.State.String(), For: time.Duration(a.For()),
		Owner: processLabel(a.PID, a.Comm), Local: endpointLabel(a.LAddr, a.LPort),
		Remote: endpointLabel(a.RAddr, a.RPort), Ended: a.Ended, Retries: a.Retries}
	al.ForMS = al.For.Milliseconds()
	m.alertN++
	if len(m.alerts) < m.cfg.Alerts {
		m.alerts = append(m.alerts, al)
		return
	}
	m.alerts[m.alertAt] = al
	m.alertAt = (m.alertAt + 1) % m.cfg.Alerts
}

// BeginLive starts a new count of the open connections under g; feed each
// with Live, then take the Snapshot.
func (m *Model) BeginLive(g GroupBy) {
	for _, gr := range m.groups[g] {
		gr.open = [numStates]int{}
		gr.oldest, gr.stuck, gr.oldestUnk = 0, 0, false
	}
}

// Live counts one open connection under g at now.
func (m *Model) Live(g GroupBy, lc *timeline.LiveConn, now int64) {
	c := LiveOf(lc)
	gr := m.get(g, &c, now)
	gr.open[lc.State&(numStates-1)]++
	switch lc.State {
	case timeline.StateCloseWait, timeline.StateFinWait2, timeline.StateSynSent, timeline.StateSynRecv:
	default:
		return
	}
	if gr.oldest == 0 || lc.Since < gr.oldest {
		gr.oldest, gr.oldestSt, gr.oldestUnk = lc.Since, lc.State, lc.SinceUnknown
	}
	if m.cfg.StuckAfter > 0 && now-lc.Since >= m.cfg.StuckAfter {
		gr.stuck++
	}
}

// Counts are the figures tcptrace keeps honest, for the header.
type Counts struct {
	Events        uint64 `json:"events"`
	Lost          uint64 `json:"lost_events"`
	Evicted       uint64 `json:"evicted"`
	Records       uint64 `json:"records"`
	Alerts        uint64 `json:"alerts"`
	Open          int    `json:"open"`
	TimeWait      uint64 `json:"time_wait"` // host total, last socket scan
	TimeWaitKnown bool   `json:"time_wait_known"`
}

// Row is one group's figures. Rates are per second over the rate window.
type Row struct {
	Key         string  `json:"key"`
	Established int     `json:"established"`
	SynSent     int     `json:"syn_sent"`
	SynRecv     int     `json:"syn_recv"`
	CloseWait   int     `json:"close_wait"`
	FinWait2    int     `json:"fin_wait2"`
	TimeWait    int     `json:"time_wait"` // handed to TIME_WAIT in the last 60 s
	Stuck       int     `json:"stuck"`     // in a stuck state for StuckAfter or more
	OldestState string  `json:"oldest_state,omitempty"`
	OldestMS    int64   `json:"oldest_ms,omitempty"` // in OldestState for this long (at least)
	OldestAtLst bool    `json:"oldest_at_least,omitempty"`
	New         float64 `json:"new_per_s"`
	Refused     float64 `json:"refused_per_s"`
	Timeout     float64 `json:"timeout_per_s"`
	Reset       float64 `json:"reset_per_s"`
	Retrans     float64 `json:"retrans_per_s"`
	RST         float64 `json:"rst_per_s"`
	HandshakeN  int     `json:"handshakes"`
	P50MS       float64 `json:"handshake_p50_ms"`
	P99MS       float64 `json:"handshake_p99_ms"`
	// Records are the group's most recent connection records, newest
	// first; shared, not to be changed.
	Records []*timeline.Connection `json:"-"`
	active  int64
}

// Failures is the failed connections per second, all outcomes.
func (r *Row) Failures() float64 { return r.Refused + r.Timeout + r.Reset }

// Snapshot is one screen's worth of data, sorted worst first.
type Snapshot struct {
	Time          time.Time `json:"time"`
	GroupBy       string    `json:"group_by"`
	Group         GroupBy   `json:"-"`
	RateWindowS   float64   `json:"rate_window_s"`
	Counts        Counts    `json:"counts"`
	Rows          []Row     `json:"rows"`
	GroupsDropped uint64    `json:"groups_dropped"`
	Alerts        []Alert   `json:"alerts"` // newest first
	AlertsTotal   uint64    `json:"alerts_total"`
}

// Snapshot returns the rows of grouping g at now, worst first: call after
// BeginLive and Live for g.
func (m *Model) Snapshot(g GroupBy, now int64, counts Counts) *Snapshot {
	s := &Snapshot{Time: time.Unix(0, now), GroupBy: g.String(), Group: g, Counts: counts,
		RateWindowS: float64(m.cfg.RateWindow) / 1e9, GroupsDropped: m.dropped[g], AlertsTotal: m.alertN,
		Rows: []Row{}, Alerts: []Alert{}}
	span := min(m.cfg.RateWindow, now-m.start)
	for _, gr := range m.groups[g] {
		s.Counts.Open += gr.openTotal()
		s.Rows = append(s.Rows, gr.row(now, span))
	}
	SortRows(s.Rows, SortWorst, false)
	for i := range len(m.alerts) {
		j := (m.alertAt - 1 - i + 2*len(m.alerts)) % len(m.alerts)
		s.Alerts = append(s.Alerts, m.alerts[j])
	}
	return s
}

func (gr *group) openTotal() int {
	n := 0
	for _, st := range shownStates[:5] {
		n += gr.open[st]
	}
	return n
}

func (gr *group) row(now, span int64) Row {
	r := Row{Key: gr.label, Established: gr.open[timeline.StateEstablished], SynSent: gr.open[timeline.StateSynSent],
		SynRecv: gr.open[timeline.StateSynRecv], CloseWait: gr.open[timeline.StateCloseWait],
		FinWait2: gr.open[timeline.StateFinWait2], Stuck: gr.stuck, active: gr.active}
	if gr.oldest != 0 {
		r.OldestState, r.OldestMS, r.OldestAtLst = gr.oldestSt.String(), (now-gr.oldest)/1e6, gr.oldestUnk
	}
	// Rates: the seconds of the window, the current one partly.
	sec := now / 1e9
	var n [numCounters]uint32
	first := (now - span) / 1e9
	for i := range gr.buckets {
		if b := &gr.buckets[i]; b.sec >= first && b.sec <= sec {
			for k := range n {
				n[k] += b.n[k]
			}
		}
	}
	if span < 1e9 {
		span = 1e9 // at start: no rate from a few events in a few ms
	}
	rate := func(c counter) float64 { return float64(n[c]) * 1e9 / float64(span) }
	r.New, r.Refused, r.Timeout, r.Reset = rate(cNew), rate(cRefused), rate(cTimeout), rate(cReset)
	r.Retrans, r.RST = rate(cRetrans), rate(cRST)
	for i := range gr.tw {
		if b := &gr.tw[i]; b.sec > sec-twSeconds && b.sec <= sec {
			r.TimeWait += int(b.n)
		}
	}
	if r.HandshakeN = len(gr.hs); r.HandshakeN > 0 {
		hs := slices.Clone(gr.hs)
		slices.Sort(hs)
		r.P50MS, r.P99MS = percentile(hs, 50), percentile(hs, 99)
	}
	for i := range len(gr.records) {
		j := (gr.recNext - 1 - i + 2*len(gr.records)) % len(gr.records)
		r.Records = append(r.Records, gr.records[j])
	}
	return r
}

// percentile of sorted ns durations, in ms (nearest rank).
func percentile(sorted []int64, p int) float64 {
	i := (p*len(sorted)+99)/100 - 1
	return float64(sorted[max(i, 0)]) / 1e6
}
