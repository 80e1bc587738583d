package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/containers/cgroupv2"
)

// fakeDocker serves GET /containers/ID/json on a unix socket. A fake: no
// Docker daemon runs on the test machine (Podman's, which speaks the same
// API, is tested for real in cmd/).
func fakeDocker(t *testing.T, names map[string]string, calls *atomic.Int32, block chan struct{}) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if block != nil {
			<-block
		}
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/containers/"), "/json")
		name, ok := names[id]
		if !ok {
			http.Error(w, `{"message":"no such container"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Id": id, "Name": "/" + name,
			"Config": map[string]any{"Labels": map[string]string{"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "prod"}}})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// Ids from the path at once; the name once the worker has asked; host
// cgroups are nil; an unknown container is asked about again only after
// RetryAfter; nothing of it blocks on the API.
func TestResolverLookup(t *testing.T) {
	var calls atomic.Int32
	block := make(chan struct{})
	sock := fakeDocker(t, map[string]string{id1: "web-1"}, &calls, block)
	paths := map[uint64]string{
		1: "/system.slice/docker-" + id1 + ".scope",
		2: "/system.slice/sshd.service",
		3: "/system.slice/docker-" + id2 + ".scope",
	}
	r := NewResolver(Config{
		Endpoints:  []Endpoint{{Docker, sock}},
		CgroupPath: func(id uint64) string { return paths[id] },
		RetryAfter: time.Hour,
	})
	defer r.Close()

	// The API does not answer yet: Lookup still returns, with the ids.
	start := time.Now()
	got := r.Lookup(1)
	if got == nil || got.ID != id1 || got.Runtime != Docker || got.Name != "" {
		t.Fatalf("first Lookup: %+v", got)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Lookup took %s with the API stuck", d)
	}
	if r.Lookup(2) != nil || r.Lookup(0) != nil {
		t.Error("a host cgroup has a container")
	}
	close(block)
	if !waitUntil(5*time.Second, func() bool { return r.Lookup(1).Name != "" }) {
		t.Fatal("the name never came")
	}
	got = r.Lookup(1)
	want := Info{ID: id1, Runtime: Docker, Name: "web-1", Pod: "web", Namespace: "prod"}
	if *got != want {
		t.Errorf("named: %+v, want %+v", *got, want)
	}
	// Not known to the runtime: asked once, then not again for RetryAfter.
	r.Lookup(3)
	before := calls.Load()
	if !waitUntil(5*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, asked := r.names.get(id2)
		return asked
	}) {
		t.Fatal("unknown container never asked about")
	}
	for range 100 {
		r.Lookup(3)
	}
	r.mu.Lock()
	pending := len(r.pending)
	r.mu.Unlock()
	if n := calls.Load() - before; n != 1 || pending != 0 {
		t.Errorf("the runtime was asked %d times about an unknown container (%d pending), want once", n, pending)
	}
	if got := r.Lookup(3); got == nil || got.ID != id2 || got.Name != "" {
		t.Errorf("unknown to the runtime: %+v", got)
	}
}

// No runtime reachable: ids only, nothing blocks, nothing is reachable.
func TestResolverNoRuntime(t *testing.T) {
	r := NewResolver(Config{
		Endpoints:  []Endpoint{{Podman, filepath.Join(t.TempDir(), "none.sock")}},
		CgroupPath: func(uint64) string { return "/libpod_parent/libpod-" + id1 },
	})
	defer r.Close()
	if got := r.Lookup(9); got == nil || got.ID != id1 || got.Runtime != Podman {
		t.Errorf("Lookup: %+v", got)
	}
	if len(r.Reachable()) != 0 {
		t.Errorf("reachable: %v", r.Reachable())
	}
	if got := r.Named(context.Background(), &Info{ID: id1, Runtime: Podman}); got.Name != "" {
		t.Errorf("named without a runtime: %+v", got)
	}
}

// The caches stay within their bounds.
func TestLRUBound(t *testing.T) {
	c := newLRU[int, int](3)
	for i := range 10 {
		c.put(i, i)
	}
	c.get(7) // most recent now
	c.put(10, 10)
	if c.len() != 3 {
		t.Fatalf("len %d", c.len())
	}
	for _, k := range []int{7, 10, 9} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%d evicted", k)
		}
	}
	if _, ok := c.get(8); ok {
		t.Error("the least recently used was kept")
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"podman=/tmp/p.sock":                   {Podman, "/tmp/p.sock"},
		"unix:///var/run/docker.sock":          {Docker, "/var/run/docker.sock"},
		"/run/containerd/containerd.sock":      {Containerd, "/run/containerd/containerd.sock"},
		"cri-o=unix:///var/run/crio/crio.sock": {CRIO, "/var/run/crio/crio.sock"},
	} {
		if got, err := ParseEndpoint(in); err != nil || got != want {
			t.Errorf("%q: %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "docker=", "rel.sock", "rkt=/x.sock", "/run/other.sock"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A container's cgroup made after Run started is applied at the next walk
// (by id prefix: no runtime needed), with its child cgroups; a pod's
// cgroups by pod UID.
func TestFilterFollowsNewCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	root := cgroupv2.Root()
	top := filepath.Join(root, fmt.Sprintf("tcptrace-filter-test-%d", os.Getpid()))
	podDir := filepath.Join(top, "kubepods", "burstable", "pod"+uid)
	ctr := filepath.Join(podDir, id2)
	other := filepath.Join(top, "docker", id1)
	child := filepath.Join(other, "child")
	t.Cleanup(func() {
		for _, d := range []string{child, other, filepath.Dir(other), ctr, podDir, filepath.Dir(podDir),
			filepath.Dir(filepath.Dir(podDir)), top} {
			os.Remove(d)
		}
	})
	if err := os.MkdirAll(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Filter{Containers: []string{id1[:8]}, Pods: []string{uid}, Every: 20 * time.Millisecond}
	if need := f.NeedsRuntime(); len(need) != 0 {
		t.Errorf("an id prefix and a pod UID need no runtime: %v", need)
	}
	ids, err := f.Match(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	podID, _ := cgroupv2.ID(podDir)
	ctrID, _ := cgroupv2.ID(ctr)
	if len(ids) != 2 || !(ids[0] == podID && ids[1] == ctrID || ids[1] == podID && ids[0] == ctrID) {
		t.Fatalf("pod %s: ids %v, want its cgroup %d and its container's %d", uid, ids, podID, ctrID)
	}
	applied := make(chan []uint64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.Run(ctx, ids, func(ids []uint64) { applied <- ids }, func(err error) { t.Error(err) })
		close(done)
	}()
	defer func() { cancel(); <-done }()
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Fatal(err)
	}
	otherID, _ := cgroupv2.ID(other)
	childID, _ := cgroupv2.ID(child)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-applied:
			if len(got) == 4 && contains(got, otherID) && contains(got, childID) {
				return
			}
		case <-deadline:
			t.Fatal("the new container's cgroups were not applied")
		}
	}
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// waitUntil polls cond every few milliseconds until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	return true
}
