package tracer

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupRoot returns where the cgroup v2 hierarchy is mounted: usually
// /sys/fs/cgroup, /sys/fs/cgroup/unified on hosts in hybrid mode.
func CgroupRoot() string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
				return f[1]
			}
		}
	}
	return "/sys/fs/cgroup"
}

// cgroup2Magic is CGROUP2_SUPER_MAGIC.
const cgroup2Magic = 0x63677270

// CgroupID returns the id of a cgroup v2 directory (its inode number, which
// is what the kernel's kernfs node id and bpf_get_current_cgroup_id are).
// path may be absolute or relative to the hierarchy's root
// ("/system.slice/x.service").
func CgroupID(path string) (uint64, error) {
	root := CgroupRoot()
	full := path
	if !strings.HasPrefix(path, root+"/") && path != root {
		full = filepath.Join(root, path)
	}
	var fsst unix.Statfs_t
	if err := unix.Statfs(full, &fsst); err != nil {
		return 0, fmt.Errorf("%s: %w", full, err)
	}
	if fsst.Type != cgroup2Magic {
		return 0, fmt.Errorf("%s is not on a cgroup v2 filesystem", full)
	}
	var st unix.Stat_t
	if err := unix.Stat(full, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", full, err)
	}
	return st.Ino, nil
}

// CgroupPaths names cgroup ids by walking the hierarchy, with a cache.
// A miss triggers at most one walk per second.
type CgroupPaths struct {
	root     string
	paths    map[uint64]string
	lastWalk time.Time
}

// Path returns the cgroup's path relative to the hierarchy root
// ("/system.slice/nginx.service"), or "" if not found.
func (c *CgroupPaths) Path(id uint64) string {
	if p, ok := c.paths[id]; ok {
		return p
	}
	if time.Since(c.lastWalk) < time.Second {
		return ""
	}
	c.lastWalk = time.Now()
	if c.root == "" {
		c.root = CgroupRoot()
	}
	c.paths = make(map[uint64]string)
	filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			rel := strings.TrimPrefix(path, c.root)
			if rel == "" {
				rel = "/"
			}
			c.paths[st.Ino] = rel
		}
		return nil
	})
	return c.paths[id]
}
