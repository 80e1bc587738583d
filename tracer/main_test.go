package tracer_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// peerEnv switches the test binary into a peer process: a TCP server or
// client of its own, so that tests can check which process owns what.
const peerEnv = "TCPTRACE_TEST_PEER"

func TestMain(m *testing.M) {
	switch os.Getenv(peerEnv) {
	case "server":
		os.Exit(peerServer())
	case "client":
		os.Exit(peerClient(os.Getenv("TCPTRACE_TEST_ADDR")))
	case "holder":
		os.Exit(peerHolder(os.Getenv("TCPTRACE_TEST_ADDR")))
	case "worker":
		os.Exit(peerWorker())
	case "closer":
		os.Exit(peerCloser())
	case "fdlimited":
		os.Exit(peerFDLimited())
	}
	os.Exit(m.Run())
}

// peerServer listens, prints its address, serves one connection (reads to
// EOF, closes) and exits.
func peerServer() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		return 1
	}
	io.Copy(io.Discard, c)
	c.Close()
	ln.Close()
	return 0
}

// peerClient waits for a line on stdin (time for the test to move it into a
// cgroup), then connects, sends a byte and closes.
func peerClient(addr string) int {
	bufio.NewReader(os.Stdin).ReadString('\n')
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	c.Write([]byte("x"))
	c.Close()
	return 0
}

// peerHolder waits for a line on stdin (time to move it into a cgroup),
// connects, prints "connected", and closes when stdin ends.
func peerHolder(addr string) int {
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("connected")
	io.Copy(io.Discard, in)
	c.Close()
	return 0
}

// peerWorker is a prefork server's worker: it accepts one connection on
// the listener it inherited as fd 3, prints "accepted", and holds the
// connection until stdin ends.
func peerWorker() int {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("accepted")
	io.Copy(io.Discard, os.Stdin)
	c.Close()
	return 0
}

// peerCloser holds a connected socket it inherited as fd 3 (created before
// the fork, by its parent) and closes it when a line comes on stdin.
func peerCloser() int {
	f := os.NewFile(3, "socket")
	fmt.Println("holding")
	bufio.NewReader(os.Stdin).ReadString('\n')
	f.Close()
	fmt.Println("closed")
	return 0
}

// peer is a running peer process.
type peer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startPeer runs the test binary as a peer named name (its comm: the kernel
// takes it from the executable's file name) inside ns.
func startPeer(t *testing.T, ns *netnstest.NS, name, mode, addr string) *peer {
	t.Helper()
	return startPeerWith(t, ns, name, mode, addr, nil)
}

// startPeerWith is startPeer, handing the peer extra files (fd 3 on).
func startPeerWith(t *testing.T, ns *netnstest.NS, name, mode, addr string, files []*os.File) *peer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	p := &peer{cmd: exec.Command(link)}
	p.cmd.ExtraFiles = files
	p.cmd.Env = append(os.Environ(), peerEnv+"="+mode, "TCPTRACE_TEST_ADDR="+addr)
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(stdout)
	ns.Do(func() { err = p.cmd.Start() }) // forked from the namespace's thread: it inherits it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// line reads one line the peer printed, with a deadline.
func (p *peer) line(t *testing.T) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		s, _ := p.out.ReadString('\n')
		got <- s
	}()
	select {
	case s := <-got:
		return s[:max(len(s)-1, 0)]
	case <-time.After(waitTimeout):
		t.Fatal("peer printed nothing")
		return ""
	}
}

// wait waits for the peer to exit successfully.
func (p *peer) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("peer %s: %v", p.cmd.Path, err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("peer did not exit")
	}
}
