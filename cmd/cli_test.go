package cmd_test

// End-to-end tests of the tcptrace binary: built once, run as a user would,
// against real connections in a private network namespace.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

var binary string

func TestMain(m *testing.M) {
	// Inside the test VM (test/kernels) there is no Go: use its binary.
	if b := os.Getenv("TCPTRACE_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "tcptrace-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tcptrace")
	build := exec.Command("go", "build", "-o", binary, "..")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tcptrace:", err)
		os.Exit(1)
	}
	// Let the unprivileged test's user run the binary.
	os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const timeout = 30 * time.Second

// tcptrace is a running tcptrace whose stdout is read line by line.
type tcptrace struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout io.ReadCloser
	lines  chan string
	stderr bytes.Buffer
	done   chan error
}

// start runs tcptrace with args and waits until its probes are attached.
func start(t *testing.T, args ...string) *tcptrace {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	p := launch(t, exec.Command(binary, append(args, "--ready-file", ready)...))
	if exited, err := p.waitReady(ready); exited {
		t.Fatalf("tcptrace exited before it was ready (%v); stderr: %s", err, p.stderr.String())
	}
	return p
}

// launch starts cmd, a tcptrace command line, and reads its stdout line by
// line.
func launch(t *testing.T, cmd *exec.Cmd) *tcptrace {
	t.Helper()
	p := &tcptrace{t: t, cmd: cmd, lines: make(chan string, 1024), done: make(chan error, 1)}
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// waitReady waits until tcptrace creates its ready file (its probes are
// attached), or exits: then it says so, with its exit error.
func (p *tcptrace) waitReady(ready string) (exited bool, err error) {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond) // polling a file, with a deadline
	defer poll.Stop()
	for {
		if _, err := os.Stat(ready); err == nil {
			return false, nil
		}
		select {
		case err := <-p.done:
			return true, err
		case <-deadline.C:
			p.t.Fatalf("tcptrace not ready within %s; stderr: %s", timeout, p.stderr.String())
		case <-poll.C:
		}
	}
}

// until reads lines until one contains s, and returns the lines read.
func (p *tcptrace) until(s string) []string {
	p.t.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("output ended before %q; got:\n%s\nstderr: %s", s, strings.Join(got, "\n"), p.stderr.String())
			}
			got = append(got, line)
			if strings.Contains(line, s) {
				return got
			}
		case <-deadline:
			p.t.Fatalf("no %q within %s; got:\n%s", s, timeout, strings.Join(got, "\n"))
		}
	}
}

// stop sends sig and returns the rest of the output and the exit code.
func (p *tcptrace) stop(sig os.Signal) ([]string, int) {
	p.t.Helper()
	if sig != nil {
		p.cmd.Process.Signal(sig)
	}
	var rest []string
	for line := range p.lines {
		rest = append(rest, line)
	}
	select {
	case err := <-p.done:
		return rest, exitCode(err)
	case <-time.After(timeout):
		p.t.Fatalf("tcptrace did not exit within %s", timeout)
		return nil, -1
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// connect makes one graceful connection in ns and returns the server port.
func connect(t *testing.T, ns *netnstest.NS, addr string) uint16 {
	t.Helper()
	c, s, port := connected(t, ns, addr)
	c.Close()
	io.Copy(io.Discard, s)
	s.Close()
	return port
}

// connected makes a connection in ns to a listener of its own on addr,
// closed once accepted, and returns both ends and the server port.
func connected(t *testing.T, ns *netnstest.NS, addr string) (client, server net.Conn, port uint16) {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() {
		if ln, err = net.Listen("tcp", addr); err == nil {
			client, err = net.Dial("tcp", ln.Addr().String())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return client, server, uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestJSONStream(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--netns", strconv.FormatUint(uint64(ns.Inode), 10))
	port := connect(t, ns, "127.0.0.1:0")
	lines := p.until(`"role":"server"`)
	rest, code := p.stop(os.Interrupt)
	if code != 0 {
		t.Fatalf("exit code %d after SIGINT; stderr: %s", code, p.stderr.String())
	}
	lines = append(lines, rest...)
	var client, summary map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch {
		case m["type"] == "connection" && m["role"] == "client" && m["rport"] == float64(port):
			client = m
		case m["type"] == "summary":
			summary = m
		}
	}
	if client == nil || summary == nil {
		t.Fatalf("no client record or no summary in:\n%s", strings.Join(lines, "\n"))
	}
	if client["outcome"] != "closed" || client["closed_by"] != "local" || client["comm"] != "cmd.test" ||
		client["pid"] != float64(os.Getpid()) || client["netns"] != float64(ns.Inode) {
		t.Errorf("client record: %v", client)
	}
	// The listener was still open at SIGINT: flushed as open? It was
	// closed by connect(); every record is accounted for in the summary.
	if summary["connections"].(float64) < 3 || summary["lost_events"] != float64(0) {
		t.Errorf("summary: %v", summary)
	}
}

func TestTextAndOpenConnectionsFlushed(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "--netns", ns.Path)
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "[::1]:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := connect(t, ns, "[::1]:0")
	// The header, wider than 80 columns, breaks before the role.
	p.until(fmt.Sprintf("→ [::1]:%d cmd.test[%d]", port, os.Getpid()))
	if l := p.until("client closed by local"); len(l) != 1 || !strings.HasPrefix(l[0], "    client closed by local") {
		t.Errorf("the header's second line is not the role and outcome: %q", l)
	}
	rest, code := p.stop(syscall.SIGTERM)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr: %s", code, p.stderr.String())
	}
	out := strings.Join(rest, "\n")
	// The listener still open at SIGTERM is flushed with outcome open.
	if !strings.Contains(out, "listener open") || !strings.Contains(out, "connections in") {
		t.Errorf("want the open listener flushed and a summary, got:\n%s", out)
	}
}

func TestCountStops(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--count", "1", "--netns", ns.Path)
	connect(t, ns, "127.0.0.1:0")
	rest, code := p.stop(nil)
	if code != 0 {
		t.Fatalf("exit %d; stderr %s", code, p.stderr.String())
	}
	n := 0
	for _, l := range rest {
		if strings.Contains(l, `"type":"connection"`) {
			n++
		}
	}
	if n != 1 || !strings.Contains(rest[len(rest)-1], `"type":"summary"`) {
		t.Errorf("want exactly 1 record then the summary, got:\n%s", strings.Join(rest, "\n"))
	}
}

func TestDuration(t *testing.T) {
	p := start(t, "--duration", "200ms", "--port", "1")
	rest, code := p.stop(nil)
	if code != 0 || !strings.Contains(strings.Join(rest, "\n"), "0 connections in") {
		t.Errorf("exit %d, output %q, stderr %s", code, rest, p.stderr.String())
	}
}

// tcptrace | head -1: the pipe closes, tcptrace exits 0 without a word.
func TestClosedPipeExitsQuietly(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--events", "--netns", ns.Path)
	connect(t, ns, "127.0.0.1:0")
	p.until(`"type":"event"`)
	// Close the read end of its stdout, as head does after one line.
	p.stdout.Close()
	connect(t, ns, "127.0.0.1:0") // more output, into the closed pipe
	_, code := p.stop(nil)
	if code != 0 || p.stderr.Len() != 0 {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, p.stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--port", "0"}, "--port must be between 1 and 65535"},
		{[]string{"--port", "70000"}, "--port must be between 1 and 65535"},
		{[]string{"--port", "http"}, "invalid argument"},
		{[]string{"-o", "yaml"}, "--output must be text or json"},
		{[]string{"-4", "-6"}, "exclude each other"},
		{[]string{"--duration", "soon"}, "invalid argument"},
		{[]string{"--netns", "/nonexistent/ns"}, "no such file"},
		{[]string{"--netns", "/proc/self/status"}, "not a namespace file"},
		{[]string{"--comm", "a-very-long-process-name"}, "15 bytes"},
		{[]string{"--ring-size", "1000"}, "power of two"},
		{[]string{"--count", "-1"}, "--count must be positive"},
		{[]string{"--bogus"}, "unknown flag"},
		{[]string{"extra-arg"}, "takes no arguments"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			code := exitCode(cmd.Run())
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestUnprivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	cmd := exec.Command(binary, "--duration", "1s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code := exitCode(cmd.Run())
	if code != 1 || !strings.Contains(stderr.String(), "run tcptrace as root") {
		t.Errorf("exit %d, stderr %q; want 1 and the privileges message", code, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tcptrace ") {
		t.Errorf("--version: %q %v", out, err)
	}
}

// Alerts, anomalies only, and TIME_WAIT counts on demand, end to end.
func TestAlertsAnomaliesAndTimeWait(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--netns", ns.Path, "--stuck-after", "300ms", "--only-anomalies")
	connect(t, ns, "127.0.0.1:0") // a clean close: not printed

	// A connection refused: printed.
	var refusedPort uint16
	ns.Do(func() {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		refusedPort = uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		net.Dial("tcp", ln.Addr().String())
	})
	// A server socket left in CLOSE_WAIT: alerted on.
	var ln net.Listener
	var cli net.Conn
	var err error
	ns.Do(func() {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			cli, err = net.Dial("tcp", ln.Addr().String())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli.Close()

	lines := p.until(`"kind":"close_wait"`)
	p.cmd.Process.Signal(syscall.SIGUSR1)
	lines = append(lines, p.until(`"type":"time_wait"`)...)
	rest, code := p.stop(os.Interrupt)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr.String())
	}
	lines = append(lines, rest...)
	var refused, clean, alert, timeWait, summary bool
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		switch m["type"] {
		case "connection":
			switch m["outcome"] {
			case "refused":
				refused = m["rport"] == float64(refusedPort) && m["reason"] == "nothing_listening" &&
					strings.Contains(m["explanation"].(string), "nothing listening")
			case "closed":
				clean = true
			}
		case "alert":
			alert = alert || m["kind"] == "close_wait" && m["comm"] == "cmd.test" &&
				m["explanation"].(string) != "" && m["for_ms"].(float64) >= 300
		case "time_wait":
			timeWait = m["total"].(float64) >= 1
		case "summary":
			summary = m["alerts"].(float64) >= 1 && m["by_reason"].(map[string]any)["nothing_listening"] == float64(1)
		}
	}
	if !refused || clean || !alert || !timeWait || !summary {
		t.Errorf("refused %v, clean printed %v, alert %v, time_wait %v, summary %v in:\n%s",
			refused, clean, alert, timeWait, summary, strings.Join(lines, "\n"))
	}
}

func TestCgroupFlag(t *testing.T) {
	netnstest.RequireRoot(t)
	cmd := exec.Command(binary, "--cgroup", "/no-such-cgroup-here")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), "--cgroup") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	// The root of the hierarchy is a valid filter.
	p := start(t, "--cgroup", "/", "--duration", "100ms")
	if _, code := p.stop(nil); code != 0 {
		t.Errorf("exit %d: %s", code, p.stderr.String())
	}
}
