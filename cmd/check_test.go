package cmd_test

// tcptrace check: the preflight, as root, as nobody, with minimal
// capabilities, in text and JSON.

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// checkReport is the part of `tcptrace check -o json` the tests read.
type checkReport struct {
	Kernel struct {
		Release string `json:"release"`
	} `json:"kernel"`
	BTF         struct{ Status string } `json:"btf"`
	RingBuffer  struct{ Status string } `json:"ring_buffer"`
	Tracepoints []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		Required bool   `json:"required"`
	} `json:"tracepoints"`
	Optional []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"optional"`
	Iterators []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"iterators"`
	Capabilities struct {
		UID     int  `json:"uid"`
		CanLoad bool `json:"can_load"`
		Caps    []struct {
			Name      string `json:"name"`
			Effective bool   `json:"effective"`
		} `json:"caps"`
	} `json:"capabilities"`
	Load struct {
		Status   string   `json:"status"`
		Attached []string `json:"attached"`
		Error    string   `json:"error"`
	} `json:"load"`
	Verdict  string   `json:"verdict"`
	Degraded []string `json:"degraded"`
	Problems []string `json:"problems"`
	Advice   []string `json:"advice"`
}

// runCheck runs tcptrace check with args, optionally as nobody with caps.
func runCheck(t *testing.T, attr *syscall.SysProcAttr, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"check"}, args...)...)
	cmd.SysProcAttr = attr
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code = exitCode(cmd.Run())
	return out.String(), errb.String(), code
}

func parseCheck(t *testing.T, out string) *checkReport {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want exactly one line of JSON, got %q", out)
	}
	var r checkReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	return &r
}

func TestCheckJSONAsRoot(t *testing.T) {
	netnstest.RequireRoot(t)
	out, stderr, code := runCheck(t, nil, "-o", "json")
	r := parseCheck(t, out)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q; report %s", code, stderr, out)
	}
	if r.Verdict != "ok" && r.Verdict != "degraded" {
		t.Errorf("verdict %q, problems %v", r.Verdict, r.Problems)
	}
	if r.Kernel.Release == "" || r.BTF.Status != "ok" || r.RingBuffer.Status != "ok" {
		t.Errorf("kernel %q, BTF %q, ring buffer %q", r.Kernel.Release, r.BTF.Status, r.RingBuffer.Status)
	}
	names := map[string]string{}
	for _, tp := range r.Tracepoints {
		names[tp.Name] = tp.Status
		if tp.Required && tp.Status != "ok" {
			t.Errorf("required tracepoint %s: %s, yet the verdict is %s", tp.Name, tp.Status, r.Verdict)
		}
	}
	for _, want := range []string{"sock:inet_sock_set_state", "tcp:tcp_retransmit_skb", "tcp:tcp_send_reset", "tcp:tcp_receive_reset"} {
		if names[want] != "ok" {
			t.Errorf("tracepoint %s: %q", want, names[want])
		}
	}
	if len(r.Iterators) != 2 {
		t.Errorf("iterators: %+v", r.Iterators)
	}
	optional := map[string]bool{}
	for _, o := range r.Optional {
		optional[o.Name] = true
	}
	if !optional["rst_reason"] || !optional["rst_without_full_socket"] {
		t.Errorf("optional: %+v", r.Optional)
	}
	caps := map[string]bool{}
	for _, c := range r.Capabilities.Caps {
		caps[c.Name] = c.Effective
	}
	if !caps["CAP_BPF"] || !caps["CAP_PERFMON"] || !caps["CAP_SYS_ADMIN"] || !r.Capabilities.CanLoad {
		t.Errorf("root's capabilities: %+v", r.Capabilities)
	}
	// The load test attached at least the required tracepoints.
	if r.Load.Status != "ok" || len(r.Load.Attached) < 5 {
		t.Errorf("load: %+v", r.Load)
	}
	// Degraded is what the kernel lacks: consistent with the verdict.
	if (r.Verdict == "degraded") != (len(r.Degraded) > 0) {
		t.Errorf("verdict %s with degraded %v", r.Verdict, r.Degraded)
	}
}

func TestCheckText(t *testing.T) {
	netnstest.RequireRoot(t)
	out, _, code := runCheck(t, nil)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"kernel ", "BTF ", "ring buffer ", "sock:inet_sock_set_state", "iter/tcp",
		"CAP_BPF", "CAP_PERFMON", "load test     ok", "verdict: "} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "verdict: ok") && !strings.Contains(out, "verdict: degraded") {
		t.Errorf("verdict neither ok nor degraded:\n%s", out)
	}
}

func TestCheckNoLoad(t *testing.T) {
	netnstest.RequireRoot(t)
	out, _, code := runCheck(t, nil, "-o", "json", "--no-load")
	r := parseCheck(t, out)
	if code != 0 || r.Load.Status != "skipped" {
		t.Errorf("exit %d, load %+v", code, r.Load)
	}
}

// Without privileges: cannot run, exit 1, and it says what to do.
func TestCheckUnprivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	asNobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, stderr, code := runCheck(t, asNobody, "-o", "json")
	r := parseCheck(t, out)
	if code != 1 || r.Verdict != "cannot_run" || r.Capabilities.CanLoad || r.Load.Status != "skipped" {
		t.Errorf("exit %d, verdict %s, can_load %v, load %+v; stderr %q", code, r.Verdict, r.Capabilities.CanLoad, r.Load, stderr)
	}
	if len(r.Problems) == 0 || !strings.Contains(strings.Join(r.Advice, " "), "CAP_BPF and CAP_PERFMON") {
		t.Errorf("problems %q, advice %q", r.Problems, r.Advice)
	}
	// What does not need privileges is still checked.
	if r.BTF.Status != "ok" || len(r.Tracepoints) == 0 || r.Tracepoints[0].Status != "ok" {
		t.Errorf("BTF %s, tracepoints %+v", r.BTF.Status, r.Tracepoints)
	}
	text, _, code := runCheck(t, asNobody)
	if code != 1 || !strings.Contains(text, "verdict: cannot run") || !strings.Contains(text, "what to do:") {
		t.Errorf("exit %d, text:\n%s", code, text)
	}
}

// With exactly CAP_BPF and CAP_PERFMON the load test passes.
func TestCheckMinimalCapabilities(t *testing.T) {
	netnstest.RequireRoot(t)
	attr := &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
		AmbientCaps: []uintptr{capBPF, capPerfmon},
	}
	out, stderr, code := runCheck(t, attr, "-o", "json")
	r := parseCheck(t, out)
	if code != 0 || r.Load.Status != "ok" || !r.Capabilities.CanLoad || r.Capabilities.UID != nobody {
		t.Errorf("exit %d, load %+v, capabilities %+v; stderr %q", code, r.Load, r.Capabilities, stderr)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-o", "yaml"}, {"--bogus"}, {"extra"}} {
		_, stderr, code := runCheck(t, nil, args...)
		if code != 2 {
			t.Errorf("check %v: exit %d, stderr %q; want 2", args, code, stderr)
		}
	}
}
