package metrics

import (
	"bytes"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// promtool returns the path of Prometheus's promtool (Debian package
// prometheus); the test is skipped without it, except in CI.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found: CI must install it (scripts/install-deps.sh installs the prometheus package)")
		}
		t.Skip("promtool not found (apt install prometheus)")
	}
	return p
}

func runPromtool(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The alerting rules are valid, and fire (or not) as their tests say.
func TestAlertingRules(t *testing.T) {
	rules := filepath.Join("..", "deploy", "rules")
	runPromtool(t, nil, "check", "rules", filepath.Join(rules, "tcptrace.rules.yml"))
	out := runPromtool(t, nil, "test", "rules", filepath.Join(rules, "tcptrace.rules.test.yml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// What /metrics serves passes promtool's lint: names, units, help.
func TestExpositionLint(t *testing.T) {
	m := newTest(t, Config{Labels: []string{"comm"}})
	c := conn(timeline.RoleClient, timeline.OutcomeClosed, "closed_local", 40000, 443, 0)
	c.Handshake, c.HandshakeRTT, c.RSTSent = 1e6, 100, true
	m.Connection(c)
	m.Publish(Snapshot{Sockets: map[timeline.State]int{timeline.StateListen: 1}, Drops: map[string]uint64{"NETFILTER_DROP": 3},
		SyscallErrors: map[timeline.SyscallErrno]uint64{{Syscall: timeline.SyscallAccept, Errno: 24}: 90},
		Listeners: []timeline.ListenerInfo{{NetNS: 4026531840, Addr: netip.MustParseAddr("127.0.0.1"), Port: 7002,
			Queue: timeline.Queue{Len: 2, Max: 1, Drops: 24, Known: true}}}})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	runPromtool(t, rec.Body.Bytes(), "check", "metrics")
}
