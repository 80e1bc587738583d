package timeline_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// FuzzPackExact: packing connections at rest changes nothing anyone can
// see. The same operations run through a correlator that never packs and
// one that packs every idle ESTABLISHED connection at each Advance; both
// must emit the same records and alerts (in any order) and the same
// counts.
//
//	go test -run '^$' -fuzz FuzzPackExact -fuzztime 60s ./tracer/timeline/
func FuzzPackExact(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxOps*opSize {
			data = data[:fuzzMaxOps*opSize]
		}
		plain := runOps(t, data, 0)
		packed := runOps(t, data, 1)
		if !slices.Equal(plain.records, packed.records) {
			t.Fatalf("records differ\nnever packed:\n%s\npacked:\n%s", plain.records, packed.records)
		}
		if !slices.Equal(plain.alerts, packed.alerts) {
			t.Fatalf("alerts differ\nnever packed:\n%s\npacked:\n%s", plain.alerts, packed.alerts)
		}
		if plain.stats != packed.stats {
			t.Fatalf("stats differ\nnever packed: %s\npacked:       %s", plain.stats, packed.stats)
		}
	})
}

type opsResult struct {
	records []string // JSON of each record's exported fields, sorted
	alerts  []string // sorted: alerts of one Advance come in map order
	stats   string
}

// runOps feeds the fuzz operations to a correlator with PackAfter, with
// room for every cookie (which connection an eviction picks is allowed to
// differ) and alerts on.
func runOps(t *testing.T, data []byte, packAfter int64) opsResult {
	cfg := timeline.Config{MaxConnections: 64, MaxSteps: fuzzMaxSteps, CloseGrace: 50e6, StuckAfter: 3e9,
		PackAfter: packAfter}
	var r opsResult
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	corr := timeline.New(cfg, func(c *timeline.Connection) {
		// A recycled record has empty slices where a new one has nil:
		// the same to every writer.
		cp := *c
		if len(cp.Steps) == 0 {
			cp.Steps = nil
		}
		if len(cp.States) == 0 {
			cp.States = nil
		}
		r.records = append(r.records, js(&cp))
	})
	corr.OnAlert(func(a *timeline.Alert) { r.alerts = append(r.alerts, js(a)) })
	now := fuzzBaseTime
	var e timeline.Event
	for ; len(data) >= opSize; data = data[opSize:] {
		switch decodeOp(data[:opSize], &now, &e) {
		case opAdd:
			corr.Add(&e)
		case opAdvance:
			corr.Advance(now)
		case opFlush:
			corr.Flush()
		}
	}
	corr.Advance(now + 1e12)
	corr.Flush()
	if corr.Live() != 0 {
		t.Fatalf("%d connections live after Flush", corr.Live())
	}
	st := corr.Stats()
	r.stats = js(struct {
		Events, Connections, Evicted, Stray, Alerts uint64
		ByOutcome                                   any
		ByReason                                    map[string]uint64
	}{st.Events, st.Connections, st.Evicted, st.Stray, st.Alerts, st.ByOutcome, st.ByReason})
	slices.Sort(r.records)
	slices.Sort(r.alerts)
	return r
}

// A connection at rest is packed, and unpacked by its next event as it was.
func TestPackUnpack(t *testing.T) {
	cfg := timeline.DefaultConfig()
	var recs []*timeline.Connection
	c := timeline.New(cfg, func(conn *timeline.Connection) { recs = append(recs, conn.Clone()) })
	lo := netip.MustParseAddr("127.0.0.1")
	ev := func(dt int64, cookie uint64, from, to timeline.State) *timeline.Event {
		return &timeline.Event{Time: fuzzBaseTime + dt, Cookie: cookie, Type: timeline.EventState, OldState: from,
			NewState: to, LAddr: lo, RAddr: lo, LPort: 40000 + uint16(cookie), RPort: 8080, NetNS: 1, PID: 7,
			Comm: "curl", UID: 1000, SRTT: 30, BytesAcked: 1}
	}
	for cookie := uint64(1); cookie <= 3; cookie++ {
		c.Add(ev(0, cookie, timeline.StateClose, timeline.StateSynSent))
		c.Add(ev(50e3, cookie, timeline.StateSynSent, timeline.StateEstablished))
	}
	c.Advance(fuzzBaseTime + cfg.PackAfter - 1)
	if c.Packed() != 0 {
		t.Fatalf("packed %d before PackAfter", c.Packed())
	}
	c.Advance(fuzzBaseTime + 50e3 + cfg.PackAfter)
	if c.Packed() != 3 || c.Live() != 3 {
		t.Fatalf("packed %d live %d after PackAfter, want 3 and 3", c.Packed(), c.Live())
	}
	// The next event unpacks it; the record is whole.
	c.Add(ev(10e9, 1, timeline.StateEstablished, timeline.StateFinWait1))
	if c.Packed() != 2 || c.Live() != 3 {
		t.Fatalf("packed %d live %d after an event, want 2 and 3", c.Packed(), c.Live())
	}
	c.Flush()
	if len(recs) != 3 || c.Live() != 0 {
		t.Fatalf("%d records, %d live after Flush", len(recs), c.Live())
	}
	for _, r := range recs {
		if r.Handshake != 50e3 || r.HandshakeRTT != 30 || r.PID != 7 || r.Comm != "curl" || r.RAddr != lo ||
			r.States[0] != timeline.StateSynSent || r.Steps[1].To != timeline.StateEstablished {
			t.Errorf("record changed by packing: %+v", r)
		}
	}
}
