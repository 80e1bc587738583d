package cmd_test

// Robustness of the tcptrace binary: signals, kill -9, hostile process
// names, and a consumer that stops reading.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// The test binary re-executes itself as a helper process: with
// TCPTRACE_TEST_HELPER=connect it renames itself (prctl PR_SET_NAME) to
// TCPTRACE_HELPER_NAME, connects to TCPTRACE_HELPER_ADDR, sends a few bytes,
// closes and exits, before any test (or TestMain) runs.
const (
	helperEnv     = "TCPTRACE_TEST_HELPER"
	helperNameEnv = "TCPTRACE_HELPER_NAME"
	helperAddrEnv = "TCPTRACE_HELPER_ADDR"
)

func init() {
	if os.Getenv(helperEnv) != "connect" {
		return
	}
	if err := helperConnect(os.Getenv(helperNameEnv), os.Getenv(helperAddrEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// helperConnect runs on one thread throughout: PR_SET_NAME renames the
// calling thread only, and the kernel takes the owner's name from the task
// that makes the system calls. Raw system calls stay on the locked thread.
func helperConnect(name, addr string) error {
	runtime.LockOSThread()
	b := append([]byte(name), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NAME: %w", err)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	if _, err := unix.Write(fd, []byte("hello\n")); err != nil {
		return err
	}
	return unix.Close(fd)
}

// waitExit waits for p to exit within d, draining its output meanwhile.
func (p *tcptrace) waitExit(d time.Duration) ([]string, int, bool) {
	p.t.Helper()
	var rest []string
	deadline := time.After(d)
	lines := p.lines
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			rest = append(rest, line)
		case err := <-p.done:
			if lines != nil {
				for line := range lines {
					rest = append(rest, line)
				}
			}
			return rest, exitCode(err), true
		case <-deadline:
			return rest, -1, false
		}
	}
}

// Ctrl-C twice: the first starts a graceful stop, the second ends the
// process at once, whatever the first was doing.
func TestSecondSIGINTExitsAtOnce(t *testing.T) {
	ns := netnstest.New(t)
	p := start(t, "-o", "json", "--netns", ns.Path)
	connect(t, ns, "127.0.0.1:0")
	secondSIGINT(t, p.cmd.Process)
	sent := time.Now()
	_, code, ok := p.waitExit(5 * time.Second)
	if !ok {
		t.Fatalf("still running 5s after two SIGINTs; stderr: %s", p.stderr.String())
	}
	t.Logf("exited %v after the second SIGINT, code %d", time.Since(sent).Round(time.Millisecond), code)
}

// secondSIGINT sends SIGINT twice, the second right after the first was
// delivered: two signals sent before the first is delivered are one (the
// kernel keeps one pending bit per standard signal), as when a script runs
// kill -INT twice in a row.
func secondSIGINT(t *testing.T, proc *os.Process) {
	t.Helper()
	proc.Signal(os.Interrupt)
	if !waitFor(5*time.Second, func() bool { return !sigPending(proc.Pid, syscall.SIGINT) }) {
		t.Fatalf("SIGINT still pending after 5s")
	}
	proc.Signal(os.Interrupt)
}

// sigPending reports whether sig is pending for pid: process-wide (ShdPnd)
// or for one of its threads (SigPnd).
func sigPending(pid int, sig syscall.Signal) bool {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, f := range append([]string{fmt.Sprintf("/proc/%d/status", pid)}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || k != "ShdPnd" && k != "SigPnd" {
				continue
			}
			if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&(1<<(uint(sig)-1)) != 0 {
				return true
			}
		}
	}
	return false
}

// A graceful stop that can't finish (stdout is a full pipe nobody reads)
// must still give way to a second Ctrl-C, sent right after the first.
func TestSecondSIGINTWhileStuckOnFullPipe(t *testing.T) {
	ns := netnstest.New(t)
	p := startPaused(t, "-o", "json", "--events", "--netns", ns.Path)
	port, made := churn(t, ns, 300, 10*time.Second)
	if !p.waitPipeFull(20 * time.Second) {
		t.Fatalf("stdout pipe not full after %d connections to port %d", made, port)
	}
	secondSIGINT(t, p.cmd.Process)
	// Killed at once; the exit itself closes the programs' links one by
	// one in the kernel, which waits for an RCU grace period for each
	// classic tracepoint: 0.8 s in all on an idle machine, more than 15 s
	// in a kernel emulated by QEMU (TCG). Without the second SIGINT it
	// would never end: stdout stays full.
	if _, ok := p.wait(60 * time.Second); !ok {
		t.Fatalf("still running 60s after two SIGINTs while blocked writing stdout")
	}
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool { return poll(d, 10*time.Millisecond, cond) }

// bpfObjects lists the BPF programs, maps, links and BTF objects a process
// holds open, from the fdinfo of its descriptors.
type bpfObjects struct{ progs, maps, links, btfs []uint32 }

func (o bpfObjects) String() string {
	return fmt.Sprintf("programs %v, maps %v, links %v, BTF %v", o.progs, o.maps, o.links, o.btfs)
}

func heldBPFObjects(pid int) (bpfObjects, error) {
	var o bpfObjects
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return o, err
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "anon_inode:bpf") && target != "anon_inode:btf" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		field := func(name string) uint32 {
			for _, line := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(line, name+":"); ok {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
					return uint32(n)
				}
			}
			return 0
		}
		switch target {
		case "anon_inode:bpf-prog":
			o.progs = append(o.progs, field("prog_id"))
		case "anon_inode:bpf-map":
			o.maps = append(o.maps, field("map_id"))
		case "anon_inode:bpf_link", "anon_inode:bpf-link":
			o.links = append(o.links, field("link_id"))
		case "anon_inode:btf":
			o.btfs = append(o.btfs, field("btf_id"))
		}
	}
	return o, nil
}

// ourProgramNames are tcptrace's BPF programs (tracer/tcptrace_bpfel.go).
// The kernel keeps 15 bytes of a name (BPF_OBJ_NAME_LEN is 16, NUL
// included); cilium/ebpf gives the full name from the program's BTF when
// it has it.
var ourProgramNames = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{"dump_owners", "dump_tcp", "flush_queues", "handle_accept", "handle_accept4", "handle_error_report", "handle_receive_reset",
		"handle_recv_length", "handle_retransmit", "handle_retransmit_synack", "handle_send_length",
		"handle_send_reset", "handle_send_reset_noreason", "handle_set_state", "handle_retransmit_err",
		"handle_kfree_skb", "handle_kfree_skb_norxsk",
		"handle_exit_connect", "handle_exit_bind", "handle_exit_listen"} {
		m[n] = true
		m[n[:min(len(n), 15)]] = true
	}
	return m
}()

// loadedPrograms lists the programs loaded in the kernel with our names,
// by ID, through the BPF ID API.
func loadedPrograms(t *testing.T) map[uint32]string {
	t.Helper()
	progs := map[uint32]string{}
	id := ebpf.ProgramID(0)
	for i := 0; i < 1_000_000; i++ {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatalf("BPF_PROG_GET_NEXT_ID: %v", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // freed meanwhile
		}
		info, err := prog.Info()
		prog.Close()
		if err == nil && ourProgramNames[info.Name] {
			progs[uint32(id)] = info.Name
		}
	}
	return progs
}

// stillThere lists the objects that still exist in the kernel.
func stillThere(o bpfObjects) []string {
	var left []string
	for _, id := range o.progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	for _, id := range o.maps {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	for _, id := range o.links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		}
	}
	for _, id := range o.btfs {
		if h, err := btf.NewHandleFromID(btf.ID(id)); err == nil {
			h.Close()
			left = append(left, fmt.Sprintf("BTF %d", id))
		}
	}
	return left
}

// kill -9 gives tcptrace no chance to detach: the kernel must, when the
// last descriptor of each program, link and map goes with the process.
func TestKill9LeavesNothingAttached(t *testing.T) {
	netnstest.RequireRoot(t)
	before := loadedPrograms(t)
	p := start(t, "--port", "1")
	held, err := heldBPFObjects(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// tcptrace holds each program it attached, a link for each, and its maps.
	if len(held.progs) < 5 || len(held.links) < 5 || len(held.maps) < 1 {
		t.Fatalf("tcptrace holds too few BPF objects: %s", held)
	}
	during := loadedPrograms(t)
	for _, id := range held.progs {
		if _, ok := during[id]; !ok {
			t.Errorf("program %d held by tcptrace is not one of ours by name; ours loaded: %v", id, during)
		}
		if _, ok := before[id]; ok {
			t.Errorf("program %d was loaded before tcptrace started", id)
		}
	}
	t.Logf("before: %d of our programs loaded; tcptrace holds %s", len(before), held)

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.wait(10 * time.Second); !ok {
		t.Fatal("tcptrace still running 10s after SIGKILL")
	}
	// Freeing is asynchronous (RCU, deferred work): wait for it.
	var left []string
	if !waitFor(30*time.Second, func() bool { left = stillThere(held); return len(left) == 0 }) {
		t.Fatalf("30s after kill -9, still in the kernel: %v", left)
	}
	after := loadedPrograms(t)
	for _, id := range held.progs {
		if name, ok := after[id]; ok {
			t.Errorf("program %d (%s) still listed after kill -9", id, name)
		}
	}
}

// wait waits for the process to exit, draining its output.
func (p *tcptrace) wait(d time.Duration) (int, bool) {
	p.t.Helper()
	_, code, ok := p.waitExit(d)
	return code, ok
}

// hostileName is what a process may call itself: terminal escapes (clear
// screen, set the window title, bell) and bytes that are not UTF-8. The
// kernel keeps 15 bytes; this is 14.
const hostileName = "\x1b[2J\x1b]0;pwn\x07\xff\xfe"

// Process names are chosen by whoever runs the process: the text output must
// not pass escape sequences to the terminal, the JSON must stay valid.
func TestHostileProcessName(t *testing.T) {
	ns := netnstest.New(t)
	text := start(t, "--events", "--netns", ns.Path)
	js := start(t, "-o", "json", "--events", "--netns", ns.Path)

	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.SetDeadline(time.Now().Add(timeout))
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		accepted <- err
	}()

	// Started from the namespace's thread, the helper is born in it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(self, "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=connect", helperNameEnv+"="+hostileName,
		helperAddrEnv+"="+ln.Addr().String())
	var helperOut bytes.Buffer
	helper.Stdout, helper.Stderr = &helperOut, &helperOut
	ns.Do(func() { err = helper.Start() })
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- helper.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(timeout):
		helper.Process.Kill()
		t.Fatalf("helper still running after %s", timeout)
	}
	if err != nil {
		t.Fatalf("helper: %v: %s", err, helperOut.String())
	}
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout):
		t.Fatal("server side never finished")
	}
	pid := helper.Process.Pid

	// The helper's client record, in both outputs.
	marker := fmt.Sprintf("[%d] ", pid)
	textLines := text.until(marker)
	jsonLines := js.until(fmt.Sprintf(`"pid":%d,`, pid))
	rest, _ := text.stop(os.Interrupt)
	textLines = append(textLines, rest...)
	rest, _ = js.stop(os.Interrupt)
	jsonLines = append(jsonLines, rest...)

	out := strings.Join(textLines, "\n")
	if !utf8.ValidString(out) {
		t.Errorf("text output is not valid UTF-8")
	}
	for i, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0) {
			t.Fatalf("text output has control character %U at byte %d: %q", r, i, out[max(0, i-40):min(len(out), i+40)])
		}
	}
	found := false
	for _, l := range textLines {
		if strings.Contains(l, marker) && strings.Contains(l, `\x1b[2J\x1b]0;pwn\x07\xff\xfe`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no line shows the helper's name escaped (%q) with %q:\n%s", `\x1b[2J...`, marker, out)
	}

	wantComm := "\x1b[2J\x1b]0;pwn\x07\uFFFD\uFFFD"
	var client map[string]any
	for _, l := range jsonLines {
		if !utf8.ValidString(l) || strings.ContainsFunc(l, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("JSON line with raw control bytes or invalid UTF-8: %q", l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		if m["pid"] == float64(pid) && m["comm"] != wantComm {
			t.Errorf("comm %q, want %q, in %s", m["comm"], wantComm, l)
		}
		if m["type"] == "connection" && m["role"] == "client" && m["pid"] == float64(pid) {
			client = m
		}
	}
	if client == nil {
		t.Fatalf("no client record for pid %d in:\n%s", pid, strings.Join(jsonLines, "\n"))
	}
}

// startPaused runs tcptrace with its stdout on a pipe nobody reads until
// resume is called.
func startPaused(t *testing.T, args ...string) *pausedTrace {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	size, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	p := &pausedTrace{tcptrace: &tcptrace{t: t, lines: make(chan string, 1<<16), done: make(chan error, 1)},
		r: r, pipeSize: size}
	p.cmd = exec.Command(binary, append(args, "--ready-file", ready)...)
	p.cmd.Stdout = w
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { p.cmd.Process.Kill(); r.Close() })
	go func() { p.done <- p.cmd.Wait() }()
	if !waitFor(timeout, func() bool { _, err := os.Stat(ready); return err == nil || p.exited() }) || p.exited() {
		t.Fatalf("tcptrace not ready within %s; stderr: %s", timeout, p.stderr.String())
	}
	return p
}

type pausedTrace struct {
	*tcptrace
	r        *os.File
	pipeSize int
	exitErr  error
	gotExit  bool
}

func (p *pausedTrace) exited() bool {
	if p.gotExit {
		return true
	}
	select {
	case err := <-p.done:
		p.exitErr, p.gotExit = err, true
		p.done <- err // for later waits
		return true
	default:
		return false
	}
}

// waitPipeFull waits until tcptrace's stdout pipe is full.
func (p *pausedTrace) waitPipeFull(d time.Duration) bool {
	return waitFor(d, func() bool {
		n, err := unix.IoctlGetInt(int(p.r.Fd()), unix.TIOCINQ) // FIONREAD
		return err == nil && n >= p.pipeSize-4096
	})
}

// resume starts reading the pipe, line by line.
func (p *pausedTrace) resume() {
	p.stdout = p.r
	go func() {
		sc := bufio.NewScanner(p.r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
}

// wait waits for the process to exit (the pipe need not be read).
func (p *pausedTrace) wait(d time.Duration) (int, bool) {
	if !waitFor(d, p.exited) {
		return -1, false
	}
	return exitCode(p.exitErr), true
}

// churn makes up to n connections in ns (fewer if limit passes first), each
// closed by the client, and returns the server's port and how many it made.
func churn(t *testing.T, ns *netnstest.NS, n int, limit time.Duration) (uint16, int) {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(timeout))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	// Sockets made on the namespace's thread belong to it; dial from there.
	var made int
	deadline := time.Now().Add(limit)
	ns.Do(func() {
		for made = 0; made < n && time.Now().Before(deadline); made++ {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Errorf("connection %d: %v", made, err)
				return
			}
			c.Close()
		}
	})
	if made < n {
		t.Logf("made %d connections of %d within %s", made, n, limit)
	}
	return port, made
}

// A consumer that stops reading for a while: tcptrace blocks on its stdout,
// the ring buffer fills behind it, and what can't be queued must be counted
// and reported, not silently dropped.
func TestSlowConsumerLosesNothingSilently(t *testing.T) {
	for _, tc := range []struct {
		name string
		ring string
		n    int
	}{
		{"default ring", "8388608", 2000},
		{"tiny ring", "16384", 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t)
			p := startPaused(t, "-o", "json", "--ring-size", tc.ring, "--netns", ns.Path)
			port, made := churn(t, ns, tc.n, 30*time.Second)
			if !p.waitPipeFull(20 * time.Second) {
				t.Fatalf("stdout pipe not full after %d connections", made)
			}
			if p.exited() {
				t.Fatalf("tcptrace exited while its output was blocked: %v; stderr %s", p.exitErr, p.stderr.String())
			}
			p.resume()
			p.cmd.Process.Signal(os.Interrupt)
			lines, code, ok := p.waitExit(60 * time.Second)
			if !ok {
				t.Fatalf("tcptrace did not finish within 60s of resuming; stderr %s", p.stderr.String())
			}
			if code != 0 {
				t.Errorf("exit %d; stderr %s", code, p.stderr.String())
			}
			clients, lostLines := 0, 0
			var summary map[string]any
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("not JSON: %q", l)
				}
				switch m["type"] {
				case "connection":
					if m["role"] == "client" && m["rport"] == float64(port) {
						clients++
					}
				case "lost":
					lostLines++
				case "summary":
					summary = m
				}
			}
			if summary == nil {
				t.Fatalf("no summary; last lines: %v", lines[max(0, len(lines)-3):])
			}
			lost, _ := summary["lost_events"].(float64)
			t.Logf("ring %s: %d connections made, %d client records, lost_events %v (%d lost lines), summary %v",
				tc.ring, made, clients, lost, lostLines, summary)
			switch {
			case clients > made:
				t.Errorf("%d client records for %d connections", clients, made)
			case clients < made && lost == 0:
				t.Errorf("%d of %d client records missing and lost_events is 0: lost silently", made-clients, made)
			}
			if lost > 0 && lostLines == 0 {
				t.Errorf("lost_events %v in the summary but no {\"type\":\"lost\"} line", lost)
			}
		})
	}
}
