package cmd_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// records reads the JSON lines and returns the connection records on port
// (client and server) and the summary.
func pairRecords(t *testing.T, lines []string, port uint16) (client, server, summary map[string]any) {
	t.Helper()
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch {
		case m["type"] == "connection" && m["role"] == "client" && m["rport"] == float64(port):
			client = m
		case m["type"] == "connection" && m["role"] == "server" && m["lport"] == float64(port):
			server = m
		case m["type"] == "summary":
			summary = m
		}
	}
	if client == nil || server == nil || summary == nil {
		t.Fatalf("want a client, a server and a summary in:\n%s", strings.Join(lines, "\n"))
	}
	return client, server, summary
}

// Both ends of a loopback connection: each record carries the other's
// cookie, and the summary counts them.
func TestPairedJSON(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--netns", ns.Path)
	port := connect(t, ns, "127.0.0.1:0")
	lines := p.until(`"peer_cookie":`) // any record, then the rest at exit
	rest, code := p.stop(os.Interrupt)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr.String())
	}
	client, server, summary := pairRecords(t, append(lines, rest...), port)
	if client["peer_cookie"] != server["cookie"] || server["peer_cookie"] != client["cookie"] {
		t.Errorf("client %v (peer %v), server %v (peer %v)", client["cookie"], client["peer_cookie"],
			server["cookie"], server["peer_cookie"])
	}
	if summary["paired"] != float64(2) {
		t.Errorf("summary paired %v, want 2", summary["paired"])
	}
}

// --pair-wait 0: no pairing.
func TestPairingOff(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--pair-wait", "0", "--netns", ns.Path)
	port := connect(t, ns, "127.0.0.1:0")
	lines := p.until(`"role":"server"`)
	rest, code := p.stop(os.Interrupt)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr.String())
	}
	client, server, summary := pairRecords(t, append(lines, rest...), port)
	if client["peer_cookie"] != nil || server["peer_cookie"] != nil || summary["paired"] != float64(0) {
		t.Errorf("paired with --pair-wait 0: %v %v %v", client["peer_cookie"], server["peer_cookie"], summary["paired"])
	}
}

// The text header names the process at the other end.
func TestPairedText(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "--netns", ns.Path)
	port := connect(t, ns, "127.0.0.1:0")
	owner := fmt.Sprintf("cmd.test[%d]", os.Getpid())
	// Headers wider than 80 columns break before the role.
	p.until(fmt.Sprintf(":%d %s", port, owner))
	if l := p.until("client closed"); len(l) != 1 {
		t.Errorf("the client header's second line is not its role: %q", l)
	}
	if l := p.until("server closed"); len(l) < 2 || !strings.HasSuffix(l[len(l)-2], owner) {
		t.Errorf("the server's header does not name its peer %s: %q", owner, l)
	}
	rest, code := p.stop(os.Interrupt)
	if code != 0 || !regexp.MustCompile(`(, |\n    )paired 2\b`).MatchString(strings.Join(rest, "\n")) {
		t.Errorf("exit %d, summary without the pairs:\n%s", code, strings.Join(rest, "\n"))
	}
}

func TestPairWaitUsage(t *testing.T) {
	for _, arg := range []string{"-1s", "11s"} {
		cmd := exec.Command(binary, "--pair-wait", arg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), "--pair-wait must be between 0") {
			t.Errorf("--pair-wait %s: exit %d, stderr %q", arg, code, stderr.String())
		}
	}
}
