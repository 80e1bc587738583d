package deploy

import (
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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// The image tests build the real image with `make image` and run it with
// real podman, under the privileges daemonset.yaml gives the pod (turned
// into podman flags), so the manifest's capabilities are proven enough on a
// real kernel rather than asserted. podman is the stand-in for the
// kubelet and its runtime (no cluster runs here); runc because crun
// refuses this machine's hybrid cgroup layout.

// podmanRun is the start of every `podman run`: runc (above), ulimits
// podman would otherwise take from a host whose limits runc cannot set, and
// the network: "none" for the commands that need none (so that no CNI or
// netavark plugin is needed either), or ns:PATH.
func podmanRun(network string) []string {
	return []string{"--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", network}
}

// waitFor polls cond every interval until it holds or timeout passes, a
// bounded number of times; the interval paces the polling, it is not what
// the test waits for.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for range int(timeout/interval) + 1 {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return cond()
}

// requirePodman skips when podman or runc is missing, except in CI, where
// the image must be tested: there it fails.
func requirePodman(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found: the image tests build and run the image with podman and runc; " +
				"install them (sudo ./scripts/install-deps.sh podman runc)"
			if os.Getenv("CI") != "" {
				tb.Fatal(msg)
			}
			tb.Skip(msg)
		}
	}
	// Root: rootless podman could build, but not load BPF programs.
	netnstest.RequireRoot(tb)
}

// command runs name args with a deadline and returns stdout; a failure
// reports stderr.
func command(tb testing.TB, timeout time.Duration, name string, args ...string) string {
	tb.Helper()
	out, err := commandErr(timeout, name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func commandErr(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return stdout.String(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// builtImage is one image built for the tests, removed when they end.
type builtImage struct {
	name    string // localhost/tcptrace:test-...
	version string // what `tcptrace --version` must say
}

// buildImage runs `make image` with a tag of its own, so that a developer's
// localhost/tcptrace:dev is left alone.
func buildImage(tb testing.TB) builtImage {
	tb.Helper()
	requirePodman(tb)
	version := fmt.Sprintf("test-%d", time.Now().UnixNano())
	img := builtImage{name: "localhost/tcptrace:" + version, version: version}
	tb.Cleanup(func() {
		if _, err := commandErr(time.Minute, "podman", "rmi", "--force", img.name); err != nil {
			tb.Errorf("removing the test image: %v", err)
		}
	})
	// The first build of the static binary takes a minute on two cores.
	out := command(tb, 8*time.Minute, "make", "-C", "..", "image", "IMAGE="+img.name, "VERSION="+version)
	tb.Logf("make image:\n%s", out)
	return img
}

// podSecurityArgs turns the DaemonSet's pod into podman flags: user,
// capabilities, read-only root, host PID namespace, seccomp, and the
// hostPath mounts, read-only, each one that exists on this host (the
// runtime sockets' directories mostly do not here).
func podSecurityArgs(tb testing.TB, ds *appsv1.DaemonSet) []string {
	tb.Helper()
	spec := ds.Spec.Template.Spec
	c := tracerContainer(tb, ds)
	sc := c.SecurityContext
	var args []string
	if sc.RunAsUser != nil {
		args = append(args, "--user", strconv.FormatInt(*sc.RunAsUser, 10))
	}
	if sc.Privileged != nil && *sc.Privileged {
		args = append(args, "--privileged")
	}
	for _, d := range sc.Capabilities.Drop {
		args = append(args, "--cap-drop", string(d))
	}
	for _, a := range sc.Capabilities.Add {
		args = append(args, "--cap-add", string(a))
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		// Kubernetes mounts no tmpfs of its own over a read-only root.
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	switch {
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault:
		// podman's default profile is the runtime default.
	case sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined:
		args = append(args, "--security-opt", "seccomp=unconfined")
	default:
		tb.Fatalf("seccompProfile %v: no podman equivalent in this test", sc.SeccompProfile)
	}
	if spec.HostPID {
		args = append(args, "--pid", "host")
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, m := range c.VolumeMounts {
		host, ok := hostPaths[m.Name]
		if !ok {
			tb.Fatalf("mount %s: not a hostPath volume", m.Name)
		}
		if _, err := os.Stat(host); err != nil {
			tb.Logf("not mounting %s: %v (absent on this host)", host, err)
			continue
		}
		opts := []string{"rw"}
		if m.ReadOnly {
			opts[0] = "ro"
		}
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer {
			opts = append(opts, "rslave")
		}
		args = append(args, "-v", host+":"+m.MountPath+":"+strings.Join(opts, ","))
	}
	return args
}

func TestImage(t *testing.T) {
	img := buildImage(t)
	f := loadFleet(t)

	t.Run("version", func(t *testing.T) {
		out := command(t, time.Minute, "podman", append(podmanRun("none"), "--rm", img.name, "--version")...)
		t.Logf("tcptrace --version in the image: %q", out)
		// The version make passed with -X: proves the ldflags name the
		// real variable.
		if want := "tcptrace " + img.version + "\n"; out != want {
			t.Errorf("--version printed %q, want %q", out, want)
		}
	})

	t.Run("config", func(t *testing.T) {
		out := command(t, time.Minute, "podman", "image", "inspect", img.name)
		var inspected []struct {
			Size   int64
			Config struct {
				Entrypoint   []string
				Cmd          []string
				User         string
				ExposedPorts map[string]struct{}
				Labels       map[string]string
			}
		}
		if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 1 {
			t.Fatalf("podman image inspect: %v\n%s", err, out)
		}
		got := inspected[0]
		want := containerfileConfig(t)
		if !slices.Equal(got.Config.Entrypoint, want.Entrypoint) || !slices.Equal(got.Config.Cmd, want.Cmd) || got.Config.User != want.User {
			t.Errorf("image runs %q %q as %q, the Containerfile says %q %q as %q",
				got.Config.Entrypoint, got.Config.Cmd, got.Config.User, want.Entrypoint, want.Cmd, want.User)
		}
		port := metricsFlagPort(t, got.Config.Cmd)
		if _, ok := got.Config.ExposedPorts[fmt.Sprintf("%d/tcp", port)]; !ok {
			t.Errorf("exposed ports %v lack %d/tcp", got.Config.ExposedPorts, port)
		}
		if v := got.Config.Labels["org.opencontainers.image.version"]; v != img.version {
			t.Errorf("label org.opencontainers.image.version %q, want %q", v, img.version)
		}
		for _, l := range []string{"title", "source", "revision", "created"} {
			if got.Config.Labels["org.opencontainers.image."+l] == "" {
				t.Errorf("label org.opencontainers.image.%s is empty", l)
			}
		}
		// The binary and nothing else: a few MB. A base image or a debug
		// build slipping in would show here.
		t.Logf("image size %d bytes (%.1f MiB)", got.Size, float64(got.Size)/(1<<20))
		if got.Size > 20<<20 {
			t.Errorf("image is %d bytes: more than the static binary should take", got.Size)
		}
	})

	t.Run("check with the DaemonSet's privileges", func(t *testing.T) {
		args := append(podmanRun("none"), "--rm")
		args = append(args, podSecurityArgs(t, f.DaemonSet)...)
		args = append(args, img.name, "check", "-o", "json")
		t.Logf("podman %s", strings.Join(args, " "))
		out, err := commandErr(2*time.Minute, "podman", args...)
		var p struct {
			Verdict      string
			Problems     []string
			Degraded     []string
			BTF          struct{ Status string }
			Capabilities struct {
				UID     int  `json:"uid"`
				CanLoad bool `json:"can_load"`
				Caps    []struct {
					Name      string
					Effective bool
				}
			}
			Load struct {
				Status   string
				Programs int
				Attached []string
			}
		}
		if jerr := json.Unmarshal([]byte(out), &p); jerr != nil {
			t.Fatalf("check -o json printed no JSON (%v); run error: %v", jerr, err)
		}
		if err != nil {
			t.Errorf("check failed: %v", err)
		}
		t.Logf("verdict %s, load %s: %d programs, %d tracepoints; degraded %q", p.Verdict, p.Load.Status, p.Load.Programs, len(p.Load.Attached), p.Degraded)
		if p.Verdict == "cannot_run" || p.Load.Status != "ok" || !p.Capabilities.CanLoad || p.BTF.Status != "ok" {
			t.Errorf("tcptrace cannot run with the DaemonSet's privileges: %q", p.Problems)
		}
		if p.Capabilities.UID != 0 {
			t.Errorf("uid %d in the container, want 0", p.Capabilities.UID)
		}
		added := tracerContainer(t, f.DaemonSet).SecurityContext.Capabilities.Add
		for _, c := range p.Capabilities.Caps {
			want := slices.Contains(added, corev1.Capability(strings.TrimPrefix(c.Name, "CAP_")))
			if c.Effective != want {
				t.Errorf("%s effective %v, want %v (drop ALL, add %v)", c.Name, c.Effective, want, added)
			}
		}
	})

	t.Run("default command serves metrics and logs anomalies", func(t *testing.T) {
		testDefaultCommand(t, img, f.DaemonSet)
	})
}

// testDefaultCommand runs the image's default command (the DaemonSet's
// args) detached, in a network namespace the test made, the way a pod
// runs in its own: /healthz and /metrics answer on the metrics port, a
// connection refused in the namespace comes out of `podman logs` as a JSON
// record (the default logs the connections that did not close cleanly, in
// compact form), and SIGTERM (podman stop) ends it with status 0.
func testDefaultCommand(t *testing.T, img builtImage, ds *appsv1.DaemonSet) {
	help := command(t, time.Minute, "podman", append(podmanRun("none"), "--rm", img.name, "--help")...)
	if !strings.Contains(help, "--metrics") {
		t.Skip("this tcptrace has no --metrics flag yet: the default command cannot run")
	}
	ns := netnstest.New(t)
	name := "tcptrace-" + img.version
	args := append(podmanRun("ns:"+ns.Path), "--detach", "--name", name)
	args = append(args, podSecurityArgs(t, ds)...)
	args = append(args, img.name) // no arguments: the image's CMD
	command(t, time.Minute, "podman", args...)
	t.Cleanup(func() {
		if _, err := commandErr(time.Minute, "podman", "rm", "--force", name); err != nil {
			t.Errorf("removing the container: %v", err)
		}
	})

	port := metricsFlagPort(t, tracerContainer(t, ds).Args)
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			// Each request its own connection, closed: a record each.
			DisableKeepAlives: true,
			// The socket is made in the namespace, as a kubelet probe
			// reaches the pod's own address.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				var err error
				ns.Do(func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
				return c, err
			},
		},
	}
	get := func(path string) (int, string, error) {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b), err
	}

	// Ready: /healthz answers 200 once the programs are attached.
	var code int
	var err error
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
		code, _, err = get("/healthz")
		return err == nil && code == http.StatusOK
	}) {
		logs, _ := commandErr(time.Minute, "podman", "logs", name)
		t.Fatalf("/healthz not 200 within 30 s (last: %d, %v); container output:\n%s", code, err, logs)
	}
	code, body, err := get("/metrics")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "# TYPE tcptrace_") {
		t.Fatalf("/metrics: %d, %v, no tcptrace_ metric in:\n%.2000s", code, err, body)
	}

	// A connection refused in the namespace (nothing listens on port 9):
	// an anomaly, which tcptrace in the container must report on stdout.
	const refusedPort = 9
	ns.Do(func() {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", refusedPort), 5*time.Second); err == nil {
			c.Close()
		}
	})
	var record, logs string
	found := waitFor(10*time.Second, 200*time.Millisecond, func() bool {
		logs, err = commandErr(time.Minute, "podman", "logs", name)
		if err != nil {
			return false
		}
		sc := bufio.NewScanner(strings.NewReader(logs))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r struct {
				Type  string
				NetNS uint32 `json:"netns"`
				LPort int    `json:"lport"`
				RPort int    `json:"rport"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Type == "connection" && r.NetNS == ns.Inode &&
				r.RPort == refusedPort {
				record = sc.Text()
				return true
			}
		}
		return false
	})
	if !found {
		t.Fatalf("no record of the connection refused on port %d in namespace %d within 10 s (%v); container output:\n%.4000s", refusedPort, ns.Inode, err, logs)
	}
	t.Logf("record from the container: %.300s", record)

	command(t, time.Minute, "podman", "stop", "--time", "20", name)
	status := strings.TrimSpace(command(t, time.Minute, "podman", "inspect", "--format", "{{.State.ExitCode}}", name))
	if status != "0" {
		t.Errorf("exit status %s after SIGTERM, want 0", status)
	}
}
