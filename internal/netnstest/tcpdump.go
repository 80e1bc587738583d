package netnstest

import (
	"bufio"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Capture is tcpdump running in a namespace: the wire, to check records
// against.
type Capture struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// Tcpdump starts `tcpdump -i IFACE -nn -S -l FILTER` in the namespace
// (absolute sequence numbers, one line a packet) and returns once it
// listens. Stop ends it and returns what it printed.
func (ns *NS) Tcpdump(tb testing.TB, iface, filter string) *Capture {
	tb.Helper()
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		tb.Fatalf("tcpdump not found (apt-get install tcpdump): %v", err)
	}
	// -Z root: keep the privileges; a minimal system (the test kernels'
	// guest) has no tcpdump user to drop them to.
	args := []string{"-i", iface, "-nn", "-S", "-l", "--immediate-mode", "-Z", "root"}
	args = append(args, strings.Fields(filter)...)
	c := &Capture{cmd: exec.Command(path, args...), done: make(chan struct{})}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	ns.Do(func() { err = c.cmd.Start() })
	if err != nil {
		tb.Fatalf("starting tcpdump: %v", err)
	}
	tb.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
		}
	}()
	// tcpdump says "listening on IFACE" once its filter is in place.
	listening := make(chan bool, 1)
	var said strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening on") {
				listening <- true
				ok = true
			} else if !ok {
				said.WriteString(sc.Text() + "\n")
			}
		}
		if !ok {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			tb.Fatalf("tcpdump exited before listening:\n%s", said.String())
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("tcpdump did not start listening within 30 s")
	}
	return c
}

// Stop ends the capture (SIGINT: tcpdump flushes) and returns its lines.
func (c *Capture) Stop(tb testing.TB) []string {
	tb.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		tb.Fatal("tcpdump did not stop within 30 s")
	}
	c.cmd.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// Count is how many lines contain every one of the substrings.
func Count(lines []string, subs ...string) int {
	n := 0
	for _, l := range lines {
		all := true
		for _, s := range subs {
			if !strings.Contains(l, s) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}
