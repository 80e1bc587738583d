package cmd_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/tcptrace/tcptrace/containers/cgroupv2"
	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// requireTool skips a test whose tool is missing, or fails it in CI
// (scripts/install-deps.sh installs it there).
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: CI must install it (scripts/install-deps.sh)", name)
		}
		t.Skipf("needs %s", name)
	}
}

// run runs a command to its end, bounded, and returns its stdout.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// podmanImage builds an image of one static binary, cmd/testdata/ctrload
// (no registry is needed), and returns its name.
func podmanImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ctrload")
	build := exec.Command("go", "build", "-o", bin, "./testdata/ctrload")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ctrload: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "ctrload", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	image := fmt.Sprintf("localhost/tcptrace-ctrload:%d", os.Getpid())
	runTool(t, "podman", "import", "--quiet", tarPath, image)
	t.Cleanup(func() { exec.Command("podman", "rmi", "--force", image).Run() })
	return image
}

// podmanService starts Podman's API service on a socket of its own and
// waits until it answers.
func podmanService(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "podman.sock")
	svc := exec.Command("podman", "system", "service", "--time=0", "unix://"+sock)
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- svc.Wait() }()
	t.Cleanup(func() {
		svc.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			svc.Process.Kill()
			<-exited
		}
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		resp, err := client.Get("http://podman/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return sock
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("podman system service exited: %v", err)
		case <-time.After(20 * time.Millisecond): // polling a socket, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman system service did not answer within %s: %v", timeout, err)
		}
	}
}

// testContainer is a running ctrload container.
type testContainer struct {
	id, name string
	stdin    io.WriteCloser
	lines    chan string
}

func runContainer(t *testing.T, image, name string) *testContainer {
	t.Helper()
	cmd := exec.Command("podman", "--runtime", "runc", "run", "-i", "--rm", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--name", name, image, "/ctrload")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &testContainer{name: name, stdin: stdin, lines: make(chan string, 16)}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stdin.Close() // ctrload exits at the end of its input
		select {
		case <-exited:
		case <-time.After(timeout):
			t.Errorf("container %s did not exit within %s", name, timeout)
		}
		exec.Command("podman", "rm", "--force", "--ignore", name).Run()
	})
	if line := c.line(t); !strings.HasPrefix(line, "ready ") {
		t.Fatalf("container said %q, want ready; stderr: %s", line, stderr.String())
	}
	c.id = runTool(t, "podman", "inspect", "--format", "{{.Id}}", name)
	return c
}

func (c *testContainer) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("the container's output ended")
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("container %s said nothing within %s", c.name, timeout)
	}
	return ""
}

// connect makes one connection inside the container and returns its
// client port.
func (c *testContainer) connect(t *testing.T) int {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	l := c.line(t)
	port, err := strconv.Atoi(strings.TrimPrefix(l, "done "))
	if err != nil {
		t.Fatalf("container said %q", l)
	}
	return port
}

// record reads tcptrace's JSON lines until a connection record for which
// match is true, and returns it with the records read before it.
func (p *tcptrace) record(match func(r map[string]any) bool) (map[string]any, []map[string]any) {
	p.t.Helper()
	var before []map[string]any
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("output ended; stderr: %s", p.stderr.String())
			}
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				p.t.Fatalf("not JSON: %q", line)
			}
			if r["type"] != "connection" {
				continue
			}
			if match(r) {
				return r, before
			}
			before = append(before, r)
		case <-deadline:
			p.t.Fatalf("no matching record within %s; stderr: %s", timeout, p.stderr.String())
		}
	}
}

func clientFrom(port int) func(map[string]any) bool {
	return func(r map[string]any) bool { return r["role"] == "client" && r["lport"] == float64(port) }
}

// A real Podman container (runc, in its own network namespace): its
// connection records carry the id and runtime from the cgroup path at
// once, and the name from Podman's API soon after; --container NAME keeps
// its connections and drops the host's.
func TestPodmanContainer(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTool(t, "podman")
	requireTool(t, "runc")
	image := podmanImage(t)
	sock := podmanService(t)
	name := fmt.Sprintf("tcptrace-test-%d", os.Getpid())

	all := start(t, "-o", "json", "--runtime-endpoint", "podman="+sock)
	ctr := runContainer(t, image, name)
	named := false
	for i := 0; i < 50 && !named; i++ {
		port := ctr.connect(t)
		r, _ := all.record(clientFrom(port))
		c, _ := r["container"].(map[string]any)
		if c == nil || c["id"] != ctr.id || c["runtime"] != "podman" || c["pod"] != nil {
			t.Fatalf("record of connection %d in container %s has container %v", i, ctr.id, r["container"])
		}
		if c["name"] == name {
			named = true
			line, _ := json.Marshal(r)
			t.Logf("record: %s", line)
		} else if c["name"] != nil {
			t.Fatalf("container name %v, want %s", c["name"], name)
		}
	}
	if !named {
		t.Fatalf("no record named container %s after 50 connections; stderr: %s", name, all.stderr.String())
	}

	// The container runs before this one starts: its cgroup is in the
	// kernel filter when tcptrace is ready.
	byName := start(t, "-o", "json", "--runtime-endpoint", "podman="+sock, "--container", name)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	host, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	hostPort := host.LocalAddr().(*net.TCPAddr).Port
	s, _ := ln.Accept()
	host.Close()
	s.Close()
	port := ctr.connect(t)
	r, before := byName.record(clientFrom(port))
	if c, _ := r["container"].(map[string]any); c == nil || c["id"] != ctr.id {
		t.Errorf("--container %s: record with container %v", name, r["container"])
	}
	for _, b := range before {
		if b["lport"] == float64(hostPort) || b["rport"] == float64(hostPort) || b["container"] == nil {
			t.Errorf("--container %s let a host connection through: %v", name, b)
		}
	}
}

func TestContainerFlagErrors(t *testing.T) {
	netnstest.RequireRoot(t)
	missing := filepath.Join(t.TempDir(), "podman.sock")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--container", "web", "--runtime-endpoint", "podman=" + missing}, 1, "none is reachable"},
		{[]string{"--pod", "a/b/c"}, 2, "NAMESPACE/NAME"},
		{[]string{"--container", ""}, 2, "--container"},
		{[]string{"--container", "web", "--cgroup", "/"}, 2, "exclude each other"},
		{[]string{"--runtime-endpoint", "relative.sock"}, 2, "absolute path"},
		{[]string{"--runtime-endpoint", "rkt=/run/rkt.sock"}, 2, "unknown runtime"},
	} {
		cmd := exec.Command(binary, append(tc.args, "--duration", "1s")...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != tc.code || !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d saying %q", tc.args, code, stderr.String(), tc.code, tc.says)
		}
	}
}

// fakeCRI answers ContainerStatus as containerd's CRI plugin would. A
// fake: no CRI runtime (nor kubelet) can run on the test machine; the
// cgroups, the process in them and its connections are real.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	id  string
	uid string
}

func (f *fakeCRI) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if req.ContainerId != f.id {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{
		Id:       f.id,
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Labels: map[string]string{
			"io.kubernetes.container.name": "app",
			"io.kubernetes.pod.name":       "web",
			"io.kubernetes.pod.namespace":  "default",
			"io.kubernetes.pod.uid":        f.uid,
		},
	}}, nil
}

// A process in a Kubernetes container's cgroup (systemd driver layout,
// made here under a test cgroup): its records carry the pod UID, the
// container id and runtime from the path, and the names from the CRI; --pod
// NAMESPACE/NAME selects it.
func TestKubernetesPodCgroup(t *testing.T) {
	netnstest.RequireRoot(t)
	const (
		uid = "7d5b9c3e-1f2a-4b3c-9d8e-0123456789ab"
		id  = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	)
	top := filepath.Join(cgroupv2.Root(), fmt.Sprintf("tcptrace-test-%d", os.Getpid()))
	dirs := []string{top, "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice", "cri-containerd-" + id + ".scope"}
	for i := 1; i < len(dirs); i++ {
		dirs[i] = filepath.Join(dirs[i-1], dirs[i])
	}
	scope := dirs[len(dirs)-1]
	if err := os.MkdirAll(scope, 0o755); err != nil {
		t.Fatalf("creating cgroups: %v", err)
	}
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("removing cgroup: %v", err)
			}
		}
	})

	sock := filepath.Join(t.TempDir(), "containerd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, &fakeCRI{id: id, uid: uid})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	cg, err := os.Open(scope)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	// One connection from a process born in the container's cgroup
	// (clone3 CLONE_INTO_CGROUP).
	connectFromPod := func() {
		t.Helper()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=connect", helperNameEnv+"=tt-pod", helperAddrEnv+"="+ln.Addr().String())
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helper: %v: %s", err, out)
		}
	}
	fromPod := func(r map[string]any) bool { return r["role"] == "client" && r["comm"] == "tt-pod" }

	all := start(t, "-o", "json", "--runtime-endpoint", "containerd="+sock)
	named := false
	for i := 0; i < 50 && !named; i++ {
		connectFromPod()
		r, _ := all.record(fromPod)
		c, _ := r["container"].(map[string]any)
		if c == nil || c["id"] != id || c["runtime"] != "containerd" || c["pod_uid"] != uid {
			t.Fatalf("record from the pod's cgroup has container %v", r["container"])
		}
		named = c["name"] == "app" && c["pod"] == "web" && c["namespace"] == "default"
	}
	if !named {
		t.Fatalf("no record with the CRI's names after 50 connections; stderr: %s", all.stderr.String())
	}

	byPod := start(t, "-o", "json", "--runtime-endpoint", "containerd="+sock, "--pod", "default/web")
	host, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	hostPort := host.LocalAddr().(*net.TCPAddr).Port
	host.Close()
	connectFromPod()
	r, before := byPod.record(fromPod)
	if c, _ := r["container"].(map[string]any); c == nil || c["pod_uid"] != uid {
		t.Errorf("--pod default/web: record with container %v", r["container"])
	}
	for _, b := range before {
		if b["lport"] == float64(hostPort) || b["container"] == nil {
			t.Errorf("--pod default/web let a host connection through: %v", b)
		}
	}
	// An unknown pod matches nothing yet, and says so.
	other := start(t, "-o", "json", "--runtime-endpoint", "containerd="+sock, "--pod", "default/nothere", "--duration", "1s")
	if _, code := other.stop(nil); code != 0 || !strings.Contains(other.stderr.String(), "match no running container yet") {
		t.Errorf("--pod default/nothere: exit %d, stderr %q", code, other.stderr.String())
	}
}
