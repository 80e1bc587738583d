package deploy

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// metricsFlagPort is the port of the --metrics ADDR argument.
func metricsFlagPort(tb testing.TB, args []string) int {
	tb.Helper()
	var addr string
	found := 0
	for i, a := range args {
		switch {
		case a == "--metrics" && i+1 < len(args):
			addr, found = args[i+1], found+1
		case strings.HasPrefix(a, "--metrics="):
			addr, found = strings.TrimPrefix(a, "--metrics="), found+1
		}
	}
	if found != 1 {
		tb.Fatalf("want one --metrics ADDR in %q, found %d", args, found)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatalf("--metrics %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatalf("--metrics %q: %v", addr, err)
	}
	return p
}

// containerPort resolves a probe's port (a number or a port name).
func containerPort(tb testing.TB, c *corev1.Container, p intstr.IntOrString) int {
	tb.Helper()
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	tb.Fatalf("no container port named %q", p.StrVal)
	return 0
}

func TestFleetObjectsBelongTogether(t *testing.T) {
	f := loadFleet(t)
	ds := f.DaemonSet
	ns := f.Namespace.Name
	if f.ServiceAccount.Namespace != ns || ds.Namespace != ns {
		t.Errorf("namespaces: ServiceAccount in %q, DaemonSet in %q, want %q", f.ServiceAccount.Namespace, ds.Namespace, ns)
	}
	if got := ds.Spec.Template.Spec.ServiceAccountName; got != f.ServiceAccount.Name {
		t.Errorf("serviceAccountName %q, want %q", got, f.ServiceAccount.Name)
	}
	// hostPID, hostPath and the added capabilities are all refused below
	// the privileged Pod Security level.
	if got := f.Namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace label pod-security.kubernetes.io/enforce = %q, want privileged", got)
	}
	// The API server refuses a selector that does not select the template.
	sel := labels.SelectorFromSet(ds.Spec.Selector.MatchLabels)
	if len(ds.Spec.Selector.MatchLabels) == 0 || len(ds.Spec.Selector.MatchExpressions) != 0 ||
		!sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the pod template's labels %v", ds.Spec.Selector, ds.Spec.Template.Labels)
	}
	// tcptrace never calls the API: no token in the pod.
	if a := ds.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("automountServiceAccountToken must be false in the pod")
	}
}

func TestDaemonSetImageIsWhatMakeImageTags(t *testing.T) {
	f := loadFleet(t)
	c := tracerContainer(t, f.DaemonSet)
	if want := makefileImage(t); c.Image != want {
		t.Errorf("image %q, but make image tags %q", c.Image, want)
	}
	// A local tag (localhost/...) is never pullable: Always would fail.
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q, want IfNotPresent", c.ImagePullPolicy)
	}
	// The container runs what the image runs by default, so that the
	// image, the DaemonSet and the README say one thing.
	img := containerfileConfig(t)
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's ENTRYPOINT %q", c.Command, img.Entrypoint)
	}
	if !slices.Equal(c.Args, img.Cmd) {
		t.Errorf("args %q, the image's CMD %q", c.Args, img.Cmd)
	}
	if !slices.Contains(c.Args, "json") {
		t.Errorf("args %q: the log collector needs -o json", c.Args)
	}
}

func TestDaemonSetMetricsPortAgrees(t *testing.T) {
	f := loadFleet(t)
	ds := f.DaemonSet
	c := tracerContainer(t, ds)
	port := metricsFlagPort(t, c.Args)

	var named *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			named = &c.Ports[i]
		}
	}
	if named == nil || int(named.ContainerPort) != port || named.Protocol != corev1.ProtocolTCP {
		t.Errorf("container port metrics %+v, want TCP %d (--metrics)", named, port)
	}
	a := ds.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(port) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus.io annotations %v, want scrape true, port %d, path /metrics", a, port)
	}
	if img := containerfileConfig(t); !slices.Contains(img.Expose, port) {
		t.Errorf("Containerfile EXPOSE %v lacks the metrics port %d", img.Expose, port)
	}
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of /healthz", name)
			continue
		}
		if p.HTTPGet.Path != "/healthz" || containerPort(t, c, p.HTTPGet.Port) != port {
			t.Errorf("%s probe: GET %s on port %v, want /healthz on %d", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), port)
		}
	}
	// Without hostNetwork the port is the pod's own; with it, 9464 would be
	// taken on every node (see the comment in daemonset.yaml).
	if ds.Spec.Template.Spec.HostNetwork {
		t.Error("hostNetwork: tracing does not need it (daemonset.yaml says why)")
	}
}

func TestDaemonSetPrivileges(t *testing.T) {
	f := loadFleet(t)
	spec := f.DaemonSet.Spec.Template.Spec
	c := tracerContainer(t, f.DaemonSet)
	if !spec.HostPID {
		t.Error("hostPID must be true: the PIDs tcptrace reports are the host's")
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be false, and said so")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: the capabilities are lost at exec for any other user")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	// Exactly these: a new one must be a decision, made here too.
	want := []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"}
	if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, want) {
		t.Errorf("capabilities.add %v, want %v", got, want)
	}
	// The API server's rule (ValidateSecurityContext): no
	// allowPrivilegeEscalation: false with privileged or SYS_ADMIN.
	if ape := sc.AllowPrivilegeEscalation; ape != nil && !*ape && slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") {
		t.Error("allowPrivilegeEscalation: false with SYS_ADMIN is refused by the API server")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %v, want RuntimeDefault", sc.SeccompProfile)
	}
}

func TestDaemonSetMountsAreReadOnlyHostPaths(t *testing.T) {
	f := loadFleet(t)
	spec := f.DaemonSet.Spec.Template.Spec
	c := tracerContainer(t, f.DaemonSet)
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mounted := map[string]string{} // host path -> container path
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("mount %s (%s) is not readOnly", m.Name, m.MountPath)
		}
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			t.Errorf("mount %s: Bidirectional propagation needs a privileged container", m.Name)
		}
		v, ok := volumes[m.Name]
		if !ok || v.HostPath == nil {
			t.Errorf("mount %s: no hostPath volume of that name", m.Name)
			continue
		}
		mounted[v.HostPath.Path] = m.MountPath
	}
	if len(mounted) != len(spec.Volumes) {
		t.Errorf("%d volumes, %d mounted: a volume nobody mounts", len(spec.Volumes), len(mounted))
	}
	// What tcptrace reads, where it reads it. No host /proc: with hostPID
	// the container's own /proc is the host's PID view.
	for host, want := range map[string]string{
		"/sys/kernel/btf":     "/sys/kernel/btf",
		"/sys/kernel/tracing": "/sys/kernel/tracing",
		"/sys/fs/cgroup":      "/sys/fs/cgroup",
		"/run/netns":          "/run/netns",
		"/run/containerd":     "/run/containerd",
		"/var/run/crio":       "/var/run/crio",
	} {
		if got, ok := mounted[host]; !ok || got != want {
			t.Errorf("host %s mounted at %q, want %s", host, got, want)
		}
	}
	if _, ok := mounted["/proc"]; ok {
		t.Error("host /proc is mounted: hostPID already shows the host's processes")
	}
}

func TestDaemonSetResources(t *testing.T) {
	f := loadFleet(t)
	r := tracerContainer(t, f.DaemonSet).Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		if !okReq || !okLim {
			t.Errorf("%s: want both a request and a limit", name)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s above limit %s", name, req.String(), lim.String())
		}
	}
	// Measured: 65 MiB RSS with 1 M open connections (the default
	// --max-connections), 40 MiB steady; a limit below the first would
	// OOM-kill tcptrace on a node that holds that many.
	if lim := r.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("65Mi")) <= 0 {
		t.Errorf("memory limit %s is below the measured 65 MiB of 1 M connections", lim.String())
	}
}

func TestDaemonSetRunsOnEveryNode(t *testing.T) {
	f := loadFleet(t)
	ds := f.DaemonSet
	spec := ds.Spec.Template.Spec
	tolerateAll := slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Key == "" && t.Operator == corev1.TolerationOpExists && t.Effect == ""
	})
	if !tolerateAll {
		t.Errorf("tolerations %v: want one that tolerates every taint (operator Exists, no key, no effect)", spec.Tolerations)
	}
	if len(spec.NodeSelector) != 0 || spec.Affinity != nil {
		t.Error("a nodeSelector or affinity leaves nodes untraced")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("updateStrategy %+v: want RollingUpdate with maxUnavailable", u)
	}
	c := tracerContainer(t, ds)
	nodeName := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	})
	if !nodeName {
		t.Error("env NODE_NAME from fieldRef spec.nodeName is missing")
	}
}
