// Package cgroupv2 finds the cgroup v2 hierarchy and translates between
// cgroup ids (what the kernel's BPF helpers report) and paths in it.
package cgroupv2

import (
	"bufio"
	"io"
	"os"
	"strings"
	"sync"
)

// DefaultRoot is where the hierarchy is mounted on a host in pure cgroup v2
// mode; hybrid hosts (v1 controllers plus v2) mount it at
// /sys/fs/cgroup/unified.
const DefaultRoot = "/sys/fs/cgroup"

var (
	rootOnce sync.Once
	root     string
)

// Root returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on pure v2 hosts,
// /sys/fs/cgroup/unified on hybrid ones. DefaultRoot when none is found.
func Root() string {
	rootOnce.Do(func() {
		root = DefaultRoot
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		defer f.Close()
		if r := parseMountInfo(f); r != "" {
			root = r
		}
	})
	return root
}

// parseMountInfo returns the mount point of the cgroup2 filesystem whose
// root is the hierarchy's root ("" if none). A container's view may also
// show bind mounts of a sub-tree (root field not "/"): those cannot name
// every cgroup, so a full mount is preferred, the one at /sys/fs/cgroup
// first.
func parseMountInfo(r io.Reader) string {
	var best string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// 40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		f := strings.Fields(sc.Text())
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(f) || f[sep+1] != "cgroup2" || f[3] != "/" {
			continue
		}
		mnt := unescapeMount(f[4])
		if mnt == DefaultRoot {
			return mnt
		}
		if best == "" {
			best = mnt
		}
	}
	return best
}

// unescapeMount undoes the octal escapes mountinfo uses for spaces, tabs,
// newlines and backslashes in paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
