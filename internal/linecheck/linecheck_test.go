package linecheck

import (
	"strings"
	"testing"
)

// What issue 16 showed, from curl against python3 -m http.server: each
// defect is caught.
func TestProblemsCatchTheDefects(t *testing.T) {
	for _, tc := range []struct{ name, out, want string }{
		{"raw transition", "       +6.926ms  FIN_WAIT1 → FIN_WAIT1                        FIN_WAIT1\n", "raw FIN_WAIT1 → FIN_WAIT1"},
		{"repeated state",
			"  +7.022ms             │◀─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ FIN ─ ─│ FIN_WAIT1\n" +
				"  +7.040ms             │                                        │ FIN_WAIT1\n", "only repeats the state FIN_WAIT1"},
		{"empty row", "  +7.040ms             │                                        │\n", "empty diagram row"},
		{"note into the lines", "                       ┆peer TIME_WAIT for 2MSL (60 s), then gone┆\n", "runs into the lines"},
		{"summary", "--- events 22, lost 0, evicted 0, recursion misses 0, ring-buffer records 9, RSTs to closed ports 1, paired 2\n", "columns wide"},
		{"ascii", "  +0.000ms    SYN_SENT |- - SYN - - - - - - - - - - - - - - - ->|\n" +
			"  +0.100ms             |                                        |\n", "empty diagram row"},
	} {
		probs := Problems(tc.out)
		if len(probs) != 1 || !strings.Contains(probs[0], tc.want) {
			t.Errorf("%s: %q, want one problem: %s", tc.name, probs, tc.want)
		}
	}
	good := "  +0.000ms    SYN_SENT │─ ─ SYN ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─▶│ LISTEN\n" +
		"                       │     ⇄ 78 B sent, 1.1 KiB received      │\n" +
		"  +4.764ms             │    peer's close() after shutdown()     │\n" +
		"  +4.938ms             │                                        │ FIN_WAIT2\n" +
		"                       ┆ peer TIME_WAIT 2MSL (60 s), then gone  ┆\n" +
		"       +4.646ms  close() after shutdown(): FIN already sent     FIN_WAIT1\n"
	if probs := Problems(good); len(probs) != 0 {
		t.Errorf("problems in good output: %q", probs)
	}
}
