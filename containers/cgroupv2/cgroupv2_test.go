package cgroupv2

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want string
	}{
		{"pure v2", `24 31 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
25 31 0:23 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw`, "/sys/fs/cgroup"},
		{"hybrid", `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`, "/sys/fs/cgroup/unified"},
		{"optional fields and a sub-tree bind mount", `50 40 0:37 /kubepods /host/cg rw shared:3 master:1 - cgroup2 cgroup2 rw
51 40 0:37 / /mnt/cgroup\040v2 rw shared:3 - cgroup2 cgroup2 rw`, "/mnt/cgroup v2"},
		{"v1 only", `31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu`, ""},
		{"garbage", "x y\n-\n", ""},
	} {
		if got := parseMountInfo(strings.NewReader(tc.mountinfo)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A cgroup made here is named from its id both by handle and by walking.
func TestPathOfID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a cgroup")
	}
	root := Root()
	dir := filepath.Join(root, fmt.Sprintf("tcptrace-cgroupv2-test-%d", os.Getpid()), "child")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() {
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
	})
	id, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(dir, root)
	if id2, err := ID(want); err != nil || id2 != id {
		t.Errorf("ID(%q) = %d, %v; want %d", want, id2, err, id)
	}
	if p, err := pathByHandle(root, id); err != nil || p != want {
		t.Errorf("by handle: %q, %v; want %q", p, err, want)
	}
	walked := ""
	if err := Walk(root, func(i uint64, p string) {
		if i == id {
			walked = p
		}
	}); err != nil {
		t.Fatal(err)
	}
	if walked != want {
		t.Errorf("walk found %q, want %q", walked, want)
	}
	var paths Paths
	if p := paths.Path(id); p != want {
		t.Errorf("Paths.Path = %q, want %q", p, want)
	}
	// Removed: no name, and no error.
	os.Remove(dir)
	if p, err := pathByHandle(root, id); err != nil || p != "" {
		t.Errorf("a removed cgroup by handle: %q, %v; want nothing", p, err)
	}
	if _, err := ID("/no-such-cgroup-here"); err == nil {
		t.Error("ID of a missing cgroup: no error")
	}
}
