// Package netnstest gives each test a private network namespace, so real
// TCP traffic made by the test can be traced in isolation: tracers filter on
// the namespace's inode and never see the host's own connections.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is a network namespace held by one locked OS thread. Sockets created
// in Do belong to it (a socket keeps the namespace it was created in, so it
// may be used from any goroutine afterwards), and so do the processes
// started from Do.
type NS struct {
	// Inode identifies the namespace (what tcptrace --netns takes).
	Inode uint32
	// Path is the namespace file, valid while the test runs.
	Path string
	work chan func()
}

// RequireRoot skips the test when it can't create namespaces and load BPF,
// except in CI, where the suite must run rather than skip.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("integration tests need root; CI must run them as root")
	}
	tb.Skip("needs root: run with sudo")
}

// New creates a namespace with lo up, removed when the test ends.
func New(tb testing.TB) *NS {
	tb.Helper()
	RequireRoot(tb)
	ns := &NS{work: make(chan func())}
	ready := make(chan error)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends the
		// thread instead of reusing it, and the namespace goes with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if err := linkUp("lo"); err != nil {
			ready <- err
			return
		}
		ns.Path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		var st unix.Stat_t
		if err := unix.Stat(ns.Path, &st); err != nil {
			ready <- err
			return
		}
		ns.Inode = uint32(st.Ino)
		ready <- nil
		for f := range ns.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		tb.Fatalf("creating network namespace: %v", err)
	}
	tb.Cleanup(func() { close(ns.work) })
	return ns
}

// Do runs f on the namespace's thread and waits for it.
func (ns *NS) Do(f func()) {
	done := make(chan struct{})
	ns.work <- func() {
		defer close(done)
		f()
	}
	<-done
}

// Sysctl sets a per-namespace sysctl, e.g. "net/ipv4/tcp_syn_retries".
// It reports whether the sysctl exists on this kernel.
func (ns *NS) Sysctl(tb testing.TB, name, value string) bool {
	tb.Helper()
	var err error
	ns.Do(func() {
		// /proc/sys/net resolves to the namespace of the task opening it.
		err = os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0)
	})
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		tb.Fatalf("sysctl %s=%s: %v", name, value, err)
	}
	return true
}

// Run runs a command inside the namespace.
func (ns *NS) Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	var out []byte
	var err error
	ns.Do(func() {
		out, err = exec.Command(name, args...).CombinedOutput()
	})
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Nft loads an nftables script into the namespace; the returned function
// deletes the tables it named, undoing it.
func (ns *NS) Nft(tb testing.TB, table, chainRules string) (undo func()) {
	tb.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		tb.Fatalf("nft not found (install nftables): %v", err)
	}
	script := fmt.Sprintf("table inet %s {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n%s\n\t}\n}\n", table, chainRules)
	ns.nft(tb, script)
	return func() { ns.nft(tb, "delete table inet "+table+"\n") }
}

func (ns *NS) nft(tb testing.TB, script string) {
	tb.Helper()
	var out []byte
	var err error
	ns.Do(func() {
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		tb.Fatalf("nft: %v\n%s\n%s", err, out, script)
	}
}

// DropSYNs makes the namespace silently drop SYNs to port (nftables), so
// a connect() there retries and times out.
func (ns *NS) DropSYNs(tb testing.TB, port uint16) (undo func()) {
	return ns.Nft(tb, "drop_syns", fmt.Sprintf("\t\ttcp dport %d tcp flags & (syn | ack) == syn drop", port))
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

// Veth joins ns and peer with a veth pair, up at both ends, with addr
// (CIDR, e.g. 10.200.0.1/24) on ns's end and peerAddr on peer's: like two
// containers on one host. Each end lives in its namespace and goes with it.
func (ns *NS) Veth(tb testing.TB, peer *NS, addr, peerAddr string) {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Fatalf("ip not found (install iproute2): %v", err)
	}
	// Both ends are made here, in a namespace of the test's own, so their
	// names clash with nothing; one then moves to peer.
	ns.Run(tb, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ns.Run(tb, "ip", "link", "set", "veth1", "netns", peer.Path)
	ns.Run(tb, "ip", "addr", "add", addr, "dev", "veth0")
	ns.Run(tb, "ip", "link", "set", "veth0", "up")
	peer.Run(tb, "ip", "addr", "add", peerAddr, "dev", "veth1")
	peer.Run(tb, "ip", "link", "set", "veth1", "up")
}
