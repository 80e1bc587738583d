package timeline

import (
	"strings"
	"testing"
)

// onlyNetNS is Config.ScansNetNS for scans of one namespace.
func onlyNetNS(ino uint32) func(uint32) bool {
	return func(n uint32) bool { return n == ino }
}

// Each namespace's record quotes its own namespace's sysctls; one whose
// sysctls are unknown (or forgotten, gone) quotes none.
func TestSysctlsPerNamespace(t *testing.T) {
	var recs []*Connection
	c := New(DefaultConfig(), func(conn *Connection) { recs = append(recs, conn.Clone()) })
	c.SetSysctls(Sysctls{NetNS: 1, SynRetries: -1, SynAckRetries: -1, SynLinearTimeouts: -1, FinTimeout: 7})
	c.SetSysctls(Sysctls{NetNS: 2, SynRetries: -1, SynAckRetries: -1, SynLinearTimeouts: -1, FinTimeout: 9})
	c.SetSysctls(Sysctls{NetNS: 3, SynRetries: -1, SynAckRetries: -1, SynLinearTimeouts: -1, FinTimeout: 11})
	c.ForgetSysctls(3)
	dead := func(e *Event) { e.SockDead = true }
	for ns := uint32(1); ns <= 4; ns++ {
		inNS := func(e Event) Event { e.NetNS = ns; return e }
		cookie := uint64(ns)
		for _, e := range []Event{
			inNS(state(0, cookie, StateClose, StateSynSent)),
			inNS(state(1, cookie, StateSynSent, StateEstablished)),
			inNS(state(2, cookie, StateEstablished, StateFinWait1)),
			inNS(with(state(3, cookie, StateFinWait1, StateFinWait2), dead)),
			inNS(with(state(3, cookie, StateFinWait2, StateClose), dead)),
		} {
			c.Add(&e)
		}
	}
	c.Flush()
	want := map[uint32]string{1: "or tcp_fin_timeout=7 s pass", 2: "or tcp_fin_timeout=9 s pass", 3: "or tcp_fin_timeout", 4: "or tcp_fin_timeout"}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		if x := r.Explanation(); r.Reason != ReasonClosedLocalOrphan || !strings.HasSuffix(x, want[r.NetNS]) {
			t.Errorf("namespace %d: %s: %q, want it to end with %q", r.NetNS, r.Reason, x, want[r.NetNS])
		}
	}
}

// The sysctls kept are bounded: beyond maxSysctls namespaces, new ones are
// left out, known ones still updated.
func TestSysctlsBounded(t *testing.T) {
	c := New(DefaultConfig(), func(*Connection) {})
	for ns := uint32(1); ns <= maxSysctls+10; ns++ {
		c.SetSysctls(Sysctls{NetNS: ns, FinTimeout: 1})
	}
	if len(c.sys) != maxSysctls || c.sys[maxSysctls+1] != nil {
		t.Fatalf("%d namespaces kept, want %d", len(c.sys), maxSysctls)
	}
	c.SetSysctls(Sysctls{NetNS: 1, FinTimeout: 5})
	if c.sys[1].FinTimeout != 5 {
		t.Errorf("a known namespace's sysctls not updated when full")
	}
}
