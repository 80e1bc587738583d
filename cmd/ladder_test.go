package cmd_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/linecheck"
	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// diagram reads until the header of the connection to remote, then the
// diagram below it down to the legend, and the explanation's first line.
func (p *tcptrace) diagram(remote string) []string {
	p.t.Helper()
	lines := p.until("→ " + remote)
	d := []string{lines[len(lines)-1]}
	d = append(d, p.until("tracepoint saw it")...)
	return append(d, p.until("↳")...)
}

func checkDiagram(t *testing.T, name string, d []string, want ...string) {
	t.Helper()
	t.Logf("%s:\n%s", name, strings.Join(d, "\n"))
	all := strings.Join(d, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("%s: no %q in the diagram", name, w)
		}
	}
	for _, p := range linecheck.Problems(all) {
		t.Errorf("%s: %s", name, p)
	}
	for _, line := range d {
		if strings.Contains(line, "\x1b") {
			t.Errorf("%s: colour on a pipe: %q", name, line)
		}
	}
}

// Real connections in a private namespace, drawn by the real binary: a
// graceful close, a refused connect and a SYN timeout with the textbook
// backoff.
func TestLadderReal(t *testing.T) {
	ns := netnstest.New(t)
	ns.Sysctl(t, "net/ipv4/tcp_syn_retries", "1")
	ns.Sysctl(t, "net/ipv4/tcp_syn_linear_timeouts", "0") // absent before 6.15: exponential anyway
	p := start(t, "--ladder", "--netns", ns.Path)

	port := connect(t, ns, "127.0.0.1:0")
	d := p.diagram(fmt.Sprintf("127.0.0.1:%d", port))
	checkDiagram(t, "graceful close", d, "SYN_SENT │─ ─ SYN seq=0", "SYN+ACK seq=0 ack=1", "ESTABLISHED │─ ─ ACK ack=1",
		"FIN_WAIT1 │─ ─ FIN", "FIN_WAIT2 │◀─", "client closed by local")

	// A port nothing listens on: taken, then freed.
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	ns.Do(func() { _, err = net.Dial("tcp", closed) })
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want ECONNREFUSED", closed, err)
	}
	d = p.diagram(closed)
	checkDiagram(t, "refused", d, "CLOSE │◀──────", "── RST ───│ (no listener)", "client refused")

	// SYNs dropped: with tcp_syn_retries=1, one retry after 1 s, failure
	// 2 s later.
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ns.DropSYNs(t, uint16(ln.Addr().(*net.TCPAddr).Port))
	ns.Do(func() { _, err = net.DialTimeout("tcp", ln.Addr().String(), 30*time.Second) })
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial: %v, want ETIMEDOUT", err)
	}
	d = p.diagram(ln.Addr().String())
	checkDiagram(t, "SYN timeout", d, "wait 1.0 s", "│─── SYN (retry 1) ───", "wait 2.0 s", "✗ gave up",
		"tcp_syn_retries=1")

	if _, code := p.stop(syscall.SIGINT); code != 0 {
		t.Errorf("exit code %d; stderr: %s", code, p.stderr.String())
	}
}

// --absolute-seq reaches the diagram: the SYN's number is the wire's.
func TestLadderAbsoluteSeq(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "--ladder", "--absolute-seq", "--netns", ns.Path)
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	wire := ns.Tcpdump(t, "lo", fmt.Sprintf("tcp port %d", port))
	port = int(connect(t, ns, fmt.Sprintf("127.0.0.1:%d", port)))
	d := p.diagram(fmt.Sprintf("127.0.0.1:%d", port))
	var syn string
	for _, l := range wire.Stop(t) {
		if m := regexp.MustCompile(`Flags \[S\], seq (\d+)`).FindStringSubmatch(l); m != nil {
			syn = m[1]
		}
	}
	if syn == "" {
		t.Fatal("tcpdump saw no SYN")
	}
	checkDiagram(t, "absolute", d, "SYN seq="+syn+" ")
	if _, code := p.stop(syscall.SIGINT); code != 0 {
		t.Errorf("exit code %d; stderr: %s", code, p.stderr.String())
	}
}

func TestLadderUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ladder", "-o", "json"}, "-o json is for programs"},
		{[]string{"--ascii"}, "add --ladder"},
		{[]string{"--absolute-seq"}, "add --ladder"},
	} {
		cmd := exec.Command(binary, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
