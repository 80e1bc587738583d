package cmd_test

// End-to-end tests of tcptrace top: the real binary in a real terminal
// (tmux), real connections in a private network namespace.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// With TCPTRACE_TEST_HELPER=refuse the test binary renames itself to
// TCPTRACE_HELPER_NAME and connects to TCPTRACE_HELPER_ADDR (a closed port)
// every 100 ms, for a minute at most or until its parent is gone.
func init() {
	if os.Getenv(helperEnv) != "refuse" {
		return
	}
	if err := helperRefuse(os.Getenv(helperNameEnv), os.Getenv(helperAddrEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func helperRefuse(name, addr string) error {
	runtime.LockOSThread()
	b := append([]byte(name), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NAME: %w", err)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	parent := os.Getppid()
	for range 600 {
		if os.Getppid() != parent {
			return nil
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
		unix.Close(fd)
		if !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("connect %s: %v, want ECONNREFUSED", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// startRefuser runs the refusing helper in ns, named name, until the test ends.
func startRefuser(t *testing.T, ns *netnstest.NS, name string, port uint16) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=refuse", helperNameEnv+"="+name,
		helperAddrEnv+"=127.0.0.1:"+strconv.Itoa(int(port)))
	cmd.Stderr = os.Stderr
	ns.Do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// closedPort returns a port nothing listens on in ns.
func closedPort(t *testing.T, ns *netnstest.NS) uint16 {
	t.Helper()
	var ln net.Listener
	var err error
	ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// closeWaitLeak leaves a server socket of this process in CLOSE_WAIT: the
// client closes, the server never does (until the test ends). The
// listener stays open, so that a scan can tell the server's role.
func closeWaitLeak(t *testing.T, ns *netnstest.NS) uint16 {
	t.Helper()
	var ln net.Listener
	var client net.Conn
	var err error
	ns.Do(func() {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			client, err = net.Dial("tcp", ln.Addr().String())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	t.Cleanup(func() {
		server.Close()
		ln.Close()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// term is a tmux server of the test's own (-L), with one window.
type term struct {
	t      *testing.T
	socket string
}

func newTerm(t *testing.T, w, h int, shell string) *term {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is needed: apt-get install tmux")
		}
		t.Skip("tmux is not installed")
	}
	tm := &term{t: t, socket: fmt.Sprintf("tcptrace-top-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	tm.tmux("-f", "/dev/null", "new-session", "-d", "-x", strconv.Itoa(w), "-y", strconv.Itoa(h), "-s", "top",
		"bash --norc --noprofile -c "+shellQuote(shell))
	t.Cleanup(func() { exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *term) tmux(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (tm *term) screen() string { return tm.tmux("capture-pane", "-p", "-t", "top") }

func (tm *term) keys(keys ...string) { tm.tmux(append([]string{"send-keys", "-t", "top"}, keys...)...) }

// waitScreen polls the screen until cond holds, and fails the test with
// the last screen after d.
func (tm *term) waitScreen(d time.Duration, what string, cond func(string) bool) string {
	tm.t.Helper()
	var s string
	if !poll(d, 50*time.Millisecond, func() bool { s = tm.screen(); return cond(s) }) {
		tm.t.Fatalf("after %s, no %s on the screen:\n%s", d, what, s)
	}
	return s
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// rowIndex is the line of the row whose label starts with label (the
// first character marks the selected row), -1 if none.
func rowIndex(screen, label string) int {
	for i, l := range strings.Split(screen, "\n") {
		if len(l) > 1 && strings.HasPrefix(l[1:], label) {
			return i
		}
	}
	return -1
}

// cell returns the cell of the row whose label starts with label, under
// heading (cells are right-aligned under their heading).
func cell(screen, label, heading string) (string, bool) {
	lines := strings.Split(screen, "\n")
	end := -1
	for _, l := range lines {
		if strings.Contains(l, " GROUP ") {
			if j := strings.Index(l, " "+heading); j >= 0 {
				end = len([]rune(l[:j])) + 1 + len([]rune(heading))
			}
		}
	}
	i := rowIndex(screen, label)
	if end < 0 || i < 0 {
		return "", false
	}
	r := []rune(lines[i])
	if len(r) < end {
		return "", false
	}
	f := strings.Fields(string(r[:end]))
	return f[len(f)-1], true
}

var ageRE = regexp.MustCompile(`CW >?([0-9.]+)(ms|s)\b`)

// closeWaitAge is the OLDEST cell's age of the row, in seconds.
func closeWaitAge(screen, label string) (float64, bool) {
	for _, l := range strings.Split(screen, "\n") {
		if len(l) < 2 || !strings.HasPrefix(l[1:], label) {
			continue
		}
		m := ageRE.FindStringSubmatch(l)
		if m == nil {
			return 0, false
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		if m[2] == "ms" {
			v /= 1000
		}
		return v, true
	}
	return 0, false
}

func TestTopScreen(t *testing.T) {
	ns := netnstest.New(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	// The shell saves the terminal's settings before and after, and says
	// how tcptrace exited.
	shell := fmt.Sprintf("stty -g > %s/before; NO_COLOR=1 %s top --netns %s --interval 500ms --stuck-after 2s --ready-file %s; "+
		"echo TOP EXITED $?; stty -g > %s/after; sleep 60", dir, binary, ns.Path, ready, dir)
	tm := newTerm(t, 80, 24, shell)
	if !waitFor(timeout, func() bool { _, err := os.Stat(ready); return err == nil }) {
		t.Fatalf("not ready after %s:\n%s", timeout, tm.screen())
	}
	leakPort := closeWaitLeak(t, ns)
	refPort := closedPort(t, ns)
	startRefuser(t, ns, "refuser", refPort)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	me := strings.TrimSpace(string(comm)) + "["

	// The leak shows under this process, its age growing.
	var first float64
	tm.waitScreen(timeout, "CLOSE_WAIT age for "+me, func(s string) bool {
		var ok bool
		first, ok = closeWaitAge(s, me)
		return ok
	})
	s := tm.waitScreen(timeout, "a growing CLOSE_WAIT age", func(s string) bool {
		age, ok := closeWaitAge(s, me)
		return ok && age > first+1
	})
	if c, _ := cell(s, me, "CLOSW"); c != "1" {
		t.Errorf("CLOSW of %s is %q, want 1:\n%s", me, c, s)
	}
	// Refused connections show their rate (the refuser makes 10 a second).
	tm.waitScreen(timeout, "refused connections' rate", func(s string) bool {
		c, ok := cell(s, "refuser[", "REF/s")
		v, err := strconv.ParseFloat(c, 64)
		return ok && err == nil && v >= 2
	})
	// An alert for the leak (stuck after 2 s).
	tm.waitScreen(timeout, "a close_wait alert", func(s string) bool {
		return regexp.MustCompile(`close_wait \S+ 127\.0\.0\.1:` + strconv.Itoa(int(leakPort)) + ` →`).MatchString(s)
	})

	// Grouping by service port: the listener's port and the refused one.
	tm.keys("4")
	s = tm.waitScreen(timeout, "rows by port", func(s string) bool {
		_, a := cell(s, ":"+strconv.Itoa(int(leakPort)), "CLOSW")
		_, b := cell(s, "→:"+strconv.Itoa(int(refPort)), "REF/s")
		return strings.Contains(s, "by port") && a && b
	})
	if c, _ := cell(s, ":"+strconv.Itoa(int(leakPort)), "CLOSW"); c != "1" {
		t.Errorf("CLOSW of :%d is %q, want 1:\n%s", leakPort, c, s)
	}
	// Worst first: the stuck connection's port before the refused one;
	// reversed, after; sorted by REF/s, the refused first.
	order := func(s string) (int, int) {
		return rowIndex(s, ":"+strconv.Itoa(int(leakPort))), rowIndex(s, "→:"+strconv.Itoa(int(refPort)))
	}
	if a, b := order(s); a > b {
		t.Errorf("sorted worst first, the stuck port is not first:\n%s", s)
	}
	tm.keys("r")
	tm.waitScreen(timeout, "rows reversed", func(s string) bool {
		a, b := order(s)
		return strings.Contains(s, "(reversed)") && a > b
	})
	tm.keys("r")
	for i := 0; i < 20 && !strings.Contains(tm.screen(), "sort ref/s"); i++ {
		before := tm.screen()
		tm.keys("s")
		tm.waitScreen(timeout, "another sort order", func(s string) bool { return s != before })
	}
	tm.waitScreen(timeout, "sorted by REF/s, the refused port first", func(s string) bool {
		a, b := order(s)
		return strings.Contains(s, "sort ref/s") && b >= 0 && b < a
	})

	// By process again; select the refuser and see its records.
	tm.keys("1")
	tm.waitScreen(timeout, "rows by process", func(s string) bool { return strings.Contains(s, "by process") })
	tm.keys("Home")
	for i := 0; i < 30 && !strings.Contains(tm.screen(), ">refuser["); i++ {
		before := selectedRow(tm.screen())
		tm.keys("Down")
		// Moved, or at the last row (then the refuser is not there).
		if !poll(2*time.Second, 20*time.Millisecond, func() bool { return selectedRow(tm.screen()) != before }) {
			break
		}
	}
	tm.waitScreen(timeout, "the refuser selected", func(s string) bool { return strings.Contains(s, ">refuser[") })
	tm.keys("Enter")
	s = tm.waitScreen(timeout, "the refuser's records and a ladder", func(s string) bool {
		return strings.Contains(s, "RECENT RECORDS of refuser[") && strings.Contains(s, "client refused") &&
			strings.Contains(s, "SYN_SENT") && strings.Contains(s, "ECONNREFUSED")
	})
	t.Logf("the detail view:\n%s", s)
	if e := tm.tmux("capture-pane", "-p", "-e", "-t", "top"); strings.Contains(e, "\x1b[") {
		t.Errorf("NO_COLOR is set, yet the screen has colours or styles:\n%q", e)
	}
	tm.keys("Escape")
	tm.waitScreen(timeout, "the table again", func(s string) bool { return strings.Contains(s, " GROUP ") })
	tm.keys("p")
	tm.waitScreen(timeout, "PAUSED", func(s string) bool { return strings.Contains(s, "PAUSED") })
	tm.keys("p")
	tm.waitScreen(timeout, "running again", func(s string) bool { return !strings.Contains(s, "PAUSED") })

	tm.keys("q")
	s = tm.waitScreen(timeout, "tcptrace exited", func(s string) bool { return strings.Contains(s, "TOP EXITED") })
	if !strings.Contains(s, "TOP EXITED 0") || strings.Contains(s, "tcptrace top") {
		t.Errorf("after q, want exit 0 and the screen as it was:\n%s", s)
	}
	sameTerminal(t, dir)
}

// selectedRow is the label of the selected row.
func selectedRow(screen string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(l, ">") {
			if f := strings.Fields(l[1:]); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// sameTerminal waits for the shell's stty -g after tcptrace and compares
// it with the one before.
func sameTerminal(t *testing.T, dir string) {
	t.Helper()
	var before, after []byte
	if !waitFor(timeout, func() bool {
		var err error
		after, err = os.ReadFile(filepath.Join(dir, "after"))
		return err == nil && len(after) > 0
	}) {
		t.Fatal("no stty settings after tcptrace")
	}
	before, _ = os.ReadFile(filepath.Join(dir, "before"))
	if string(before) != string(after) || len(before) == 0 {
		t.Errorf("terminal settings changed:\nbefore %s\nafter  %s", before, after)
	}
}

// SIGTERM, Ctrl-C and a closed terminal each end top and give the terminal
// back (the settings, and the screen: no alternate screen left on).
func TestTopSignalsRestoreTerminal(t *testing.T) {
	ns := netnstest.New(t)
	for _, how := range []string{"SIGTERM", "Ctrl-C", "SIGINT"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			// env -u CI: a terminal library takes CI for no terminal (no
			// colour); a user's terminal has none.
			shell := fmt.Sprintf("stty -g > %s/before; env -u CI %s top --netns %s --ready-file %s; echo TOP EXITED $?; stty -g > %s/after; sleep 60",
				dir, binary, ns.Path, ready, dir)
			tm := newTerm(t, 120, 40, shell)
			if !waitFor(timeout, func() bool { _, err := os.Stat(ready); return err == nil }) {
				t.Fatalf("not ready after %s:\n%s", timeout, tm.screen())
			}
			tm.waitScreen(timeout, "the screen", func(s string) bool { return strings.Contains(s, "HS p99") })
			// Colour on a terminal when NO_COLOR is not set.
			if e := tm.tmux("capture-pane", "-p", "-e", "-t", "top"); !strings.Contains(e, "\x1b[") {
				t.Errorf("no colour or style on a terminal without NO_COLOR:\n%q", e)
			}
			switch how {
			case "Ctrl-C":
				tm.keys("C-c")
			default:
				pid := topPID(t, ready)
				sig := unix.SIGTERM
				if how == "SIGINT" {
					sig = unix.SIGINT
				}
				if err := unix.Kill(pid, sig); err != nil {
					t.Fatal(err)
				}
			}
			s := tm.waitScreen(timeout, "tcptrace exited", func(s string) bool { return strings.Contains(s, "TOP EXITED") })
			if strings.Contains(s, "tcptrace top") {
				t.Errorf("the alternate screen is still on:\n%s", s)
			}
			sameTerminal(t, dir)
		})
	}
}

// A panic while tracing, a resized terminal and a closed one: the
// terminal is given back (or, closed, tcptrace exits).
func TestTopPanicResizeHangup(t *testing.T) {
	ns := netnstest.New(t)
	t.Run("panic", func(t *testing.T) {
		dir := t.TempDir()
		shell := fmt.Sprintf("stty -g > %s/before; TCPTRACE_TOP_TEST_PANIC=3 %s top --netns %s --interval 200ms 2> %s/err; "+
			"echo TOP EXITED $?; stty -g > %s/after; sleep 60", dir, binary, ns.Path, dir, dir)
		tm := newTerm(t, 80, 24, shell)
		s := tm.waitScreen(timeout, "tcptrace exited", func(s string) bool { return strings.Contains(s, "TOP EXITED") })
		if !strings.Contains(s, "TOP EXITED 1") || strings.Contains(s, "tcptrace top") {
			t.Errorf("after a panic, want exit 1 and the screen as it was:\n%s", s)
		}
		sameTerminal(t, dir)
		if msg, _ := os.ReadFile(filepath.Join(dir, "err")); !strings.Contains(string(msg), "panic while tracing: TCPTRACE_TOP_TEST_PANIC") {
			t.Errorf("no report of the panic on stderr: %s", msg)
		}
	})
	t.Run("resize-and-hangup", func(t *testing.T) {
		dir := t.TempDir()
		ready := filepath.Join(dir, "ready")
		tm := newTerm(t, 80, 24, fmt.Sprintf("%s top --netns %s --ready-file %s", binary, ns.Path, ready))
		s := tm.waitScreen(timeout, "the screen at 80x24", func(s string) bool { return strings.Contains(s, " GROUP ") })
		if strings.Contains(s, "HS p99") {
			t.Errorf("the handshake times fit in 80 columns?\n%s", s)
		}
		pid := topPID(t, ready)
		tm.tmux("resize-window", "-t", "top", "-x", "120", "-y", "40")
		tm.waitScreen(timeout, "the screen redrawn at 120x40", func(s string) bool {
			return strings.Contains(s, "HS p99") && len(strings.Split(strings.TrimRight(s, "\n"), "\n")) == 40
		})
		tm.tmux("kill-server") // the terminal goes: SIGHUP
		if !waitFor(timeout, func() bool { return unix.Kill(pid, 0) != nil }) {
			t.Errorf("tcptrace top still runs %s after its terminal closed", timeout)
		}
	})
}

// topPID finds the tcptrace top process given this ready file.
func topPID(t *testing.T, ready string) int {
	t.Helper()
	var pid int
	if !waitFor(timeout, func() bool {
		out, _ := exec.Command("pgrep", "-f", "-n", "^"+regexp.QuoteMeta(binary)+" top .*"+regexp.QuoteMeta(ready)).Output()
		pid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		return pid > 0
	}) {
		t.Fatal("tcptrace top not found")
	}
	return pid
}

// --once prints one screen; -o json one object, with the leak in it.
func TestTopOnce(t *testing.T) {
	ns := netnstest.New(t)
	leakPort := closeWaitLeak(t, ns)
	out, err := exec.Command(binary, "top", "--once", "-o", "json", "--group", "port", "--netns", ns.Path).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var snap struct {
		GroupBy string `json:"group_by"`
		Rows    []struct {
			Key       string `json:"key"`
			CloseWait int    `json:"close_wait"`
		} `json:"rows"`
		Counts struct {
			Open int `json:"open"`
		} `json:"counts"`
	}
	if err := json.Unmarshal(out, &snap); err != nil {
		t.Fatalf("not one JSON object: %v: %s", err, out)
	}
	found := false
	for _, r := range snap.Rows {
		found = found || r.Key == ":"+strconv.Itoa(int(leakPort)) && r.CloseWait == 1
	}
	if snap.GroupBy != "port" || !found {
		t.Errorf("no row :%d with 1 CLOSE_WAIT: %s", leakPort, out)
	}
	text, err := exec.Command(binary, "top", "--once", "--netns", ns.Path, "--interval", "200ms").Output()
	if err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	if len(lines) != 40 || !strings.Contains(lines[2], "GROUP") || strings.ContainsRune(string(text), 0x1b) {
		t.Errorf("--once: want a plain 120x40 screen, got %d lines:\n%s", len(lines), text)
	}
}

func TestTopUsageErrors(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "-o", "json"}, "-o json is for --once"},
		{[]string{"top", "--group", "color"}, "--group must be one of"},
		{[]string{"top", "--sort", "x"}, "--sort must be one of"},
		{[]string{"top", "--interval", "1ms"}, "--interval must be between"},
		{[]string{"top"}, "use --once"}, // stdin and stdout are no terminal here
	} {
		cmd := exec.Command(binary, c.args...)
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("tcptrace %s: exit %d, %q; want 2 and %q", strings.Join(c.args, " "), code, out, c.want)
		}
	}
}
