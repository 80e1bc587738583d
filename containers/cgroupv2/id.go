package cgroupv2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// magic is CGROUP2_SUPER_MAGIC.
const magic = 0x63677270

// ID returns the id of a cgroup v2 directory: its inode number, which is
// the kernfs node id that bpf_get_current_cgroup_id() and a socket's
// sk_cgrp_data report. path may be absolute or relative to the hierarchy's
// root ("/system.slice/x.service").
func ID(path string) (uint64, error) {
	root := Root()
	full := path
	if !strings.HasPrefix(path, root+"/") && path != root {
		full = filepath.Join(root, path)
	}
	var fsst unix.Statfs_t
	if err := unix.Statfs(full, &fsst); err != nil {
		return 0, fmt.Errorf("%s: %w", full, err)
	}
	if fsst.Type != magic {
		return 0, fmt.Errorf("%s is not on a cgroup v2 filesystem", full)
	}
	var st unix.Stat_t
	if err := unix.Stat(full, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", full, err)
	}
	return st.Ino, nil
}

// fileidKernfs is FILEID_KERNFS: a kernfs file handle is the node's 64-bit
// id, so a cgroup id opens its directory directly.
const fileidKernfs = 0xfe

// errNoHandles: open_by_handle_at needs CAP_DAC_READ_SEARCH.
var errNoHandles = errors.New("open_by_handle_at not permitted")

// pathByHandle names the cgroup with this id in one open_by_handle_at and
// a readlink, without walking the tree. "" with nil error: no such cgroup
// (it was removed).
func pathByHandle(root string, id uint64) (string, error) {
	mnt, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(mnt)
	var h [8]byte
	binary.NativeEndian.PutUint64(h[:], id)
	fd, err := unix.OpenByHandleAt(mnt, unix.NewFileHandle(fileidKernfs, h[:]), unix.O_RDONLY|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EOPNOTSUPP):
		return "", errNoHandles
	case errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT):
		return "", nil
	case err != nil:
		return "", err
	}
	defer unix.Close(fd)
	full, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	return relative(root, full), nil
}

// relative turns a full path under root into a hierarchy path ("/" for the
// root itself).
func relative(root, full string) string {
	rel := strings.TrimPrefix(full, root)
	if rel == "" {
		return "/"
	}
	return rel
}

// maxPaths bounds the cache of names: beyond it, it starts over.
const maxPaths = 16384

// Paths names cgroup ids, with a cache. It opens a cgroup by its id
// (open_by_handle_at, root or CAP_DAC_READ_SEARCH); without that right it
// walks the hierarchy, at most once a second. Safe for concurrent use.
type Paths struct {
	mu       sync.Mutex
	root     string
	paths    map[uint64]string
	noHandle bool
	lastWalk time.Time
}

// Path returns the cgroup's path relative to the hierarchy root
// ("/system.slice/nginx.service"), or "" if not found.
func (c *Paths) Path(id uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.paths[id]; ok {
		return p
	}
	if c.root == "" {
		c.root = Root()
	}
	if c.paths == nil || len(c.paths) >= maxPaths {
		c.paths = make(map[uint64]string)
	}
	if !c.noHandle {
		p, err := pathByHandle(c.root, id)
		if err == nil {
			if p != "" {
				c.paths[id] = p
			}
			return p
		}
		c.noHandle = errors.Is(err, errNoHandles)
	}
	if time.Since(c.lastWalk) < time.Second {
		return ""
	}
	c.lastWalk = time.Now()
	_ = Walk(c.root, func(id uint64, path string) {
		if len(c.paths) < maxPaths {
			c.paths[id] = path
		}
	})
	return c.paths[id]
}

// Walk calls fn with the id and hierarchy path of every cgroup under root
// (Root() if empty), parents before children.
func Walk(root string, fn func(id uint64, path string)) error {
	if root == "" {
		root = Root()
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil // removed while walking, or unreadable: skip it
		}
		if !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			fn(st.Ino, relative(root, path))
		}
		return nil
	})
}
