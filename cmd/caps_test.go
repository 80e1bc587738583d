package cmd_test

// tcptrace without root: a non-root user with only the capabilities the
// README asks for (CAP_BPF and CAP_PERFMON) must trace; with one of them
// missing it must say so and exit 1.

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// Capability numbers (include/uapi/linux/capability.h).
const (
	capSysAdmin  = 21
	capSysPtrace = 19
	capPerfmon   = 38
	capBPF       = 39
)

const nobody = 65534

// startAs runs tcptrace as user nobody with exactly caps as its ambient (and
// so permitted and effective) capabilities. If it does not get ready, it
// returns nil and the exit code and stderr.
func startAs(t *testing.T, caps []uintptr, args ...string) (*tcptrace, int, string) {
	t.Helper()
	// A directory nobody may write its ready file to.
	dir, err := os.MkdirTemp("", "tcptrace-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(binary, append(args, "--ready-file", ready)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
		AmbientCaps: caps,
	}
	p := launch(t, cmd)
	if exited, err := p.waitReady(ready); exited {
		return nil, exitCode(err), p.stderr.String()
	}
	// The capabilities it really has: what the test meant to give.
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			want := uint64(0)
			for _, c := range caps {
				want |= 1 << c
			}
			if eff != want {
				t.Fatalf("tcptrace runs with CapEff %#x, want %#x", eff, want)
			}
		}
	}
	return p, 0, ""
}

// clientRecord reads until the client record of a connection to port.
func clientRecord(t *testing.T, p *tcptrace, port uint16) map[string]any {
	t.Helper()
	want := fmt.Sprintf(`"rport":%d,`, port)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, line := range p.until(want) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["type"] == "connection" && m["role"] == "client" &&
				m["rport"] == float64(port) {
				return m
			}
		}
	}
	t.Fatalf("no client record for port %d", port)
	return nil
}

// The minimum: CAP_BPF and CAP_PERFMON, filtering a namespace by inode.
func TestMinimalCapabilities(t *testing.T) {
	ns := netnstest.New(t)
	p, code, stderr := startAs(t, []uintptr{capBPF, capPerfmon},
		"-o", "json", "--netns", strconv.FormatUint(uint64(ns.Inode), 10))
	if p == nil {
		t.Fatalf("as nobody with CAP_BPF and CAP_PERFMON: exit %d, stderr %q", code, stderr)
	}
	port := connect(t, ns, "127.0.0.1:0")
	rec := clientRecord(t, p, port)
	if rec["outcome"] != "closed" || rec["pid"] != float64(os.Getpid()) {
		t.Errorf("client record: %v", rec)
	}
	if _, code := p.stop(os.Interrupt); code != 0 {
		t.Errorf("exit %d after SIGINT; stderr %s", code, p.stderr.String())
	}
}

// One capability less and tcptrace refuses, exit 1, saying what it needs.
func TestEachCapabilityIsNeeded(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tc := range []struct {
		name string
		caps []uintptr
	}{
		{"without CAP_BPF", []uintptr{capPerfmon}},
		{"without CAP_PERFMON", []uintptr{capBPF}},
		{"none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, code, stderr := startAs(t, tc.caps, "--port", "1")
			if p != nil {
				p.stop(os.Interrupt)
				t.Fatalf("tcptrace ran %s", tc.name)
			}
			if code != 1 || !strings.Contains(stderr, "CAP_BPF and CAP_PERFMON") {
				t.Errorf("exit %d, stderr %q; want 1 and the capabilities it needs", code, stderr)
			}
		})
	}
}

// CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON.
func TestSysAdminAlone(t *testing.T) {
	ns := netnstest.New(t)
	p, code, stderr := startAs(t, []uintptr{capSysAdmin}, "-o", "json", "--netns", strconv.FormatUint(uint64(ns.Inode), 10))
	if p == nil {
		t.Fatalf("as nobody with CAP_SYS_ADMIN: exit %d, stderr %q", code, stderr)
	}
	clientRecord(t, p, connect(t, ns, "127.0.0.1:0"))
	p.stop(os.Interrupt)
}

// --netns /proc/PID/ns/net of another user's process: the path can only be
// read with CAP_SYS_PTRACE (ptrace access to that process), and entering
// the namespace for socket scans (setns) takes CAP_SYS_ADMIN. With both,
// it works; what happens with less is logged.
func TestNetNSPathCapabilities(t *testing.T) {
	ns := netnstest.New(t)
	for _, tc := range []struct {
		name string
		caps []uintptr
		must bool
	}{
		{"CAP_BPF CAP_PERFMON", []uintptr{capBPF, capPerfmon}, false},
		{"CAP_BPF CAP_PERFMON CAP_SYS_PTRACE", []uintptr{capBPF, capPerfmon, capSysPtrace}, false},
		{"CAP_SYS_ADMIN", []uintptr{capSysAdmin}, false},
		{"CAP_SYS_ADMIN CAP_SYS_PTRACE", []uintptr{capSysAdmin, capSysPtrace}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, code, stderr := startAs(t, tc.caps, "-o", "json", "--netns", ns.Path)
			if p == nil {
				if tc.must {
					t.Fatalf("--netns %s with %s: exit %d, stderr %q", ns.Path, tc.name, code, stderr)
				}
				t.Logf("--netns PATH with %s: exit %d: %s", tc.name, code, bytes.TrimSpace([]byte(stderr)))
				return
			}
			clientRecord(t, p, connect(t, ns, "127.0.0.1:0"))
			p.stop(os.Interrupt)
			t.Logf("--netns PATH with %s: works", tc.name)
		})
	}
}
