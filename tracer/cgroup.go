package tracer

import "github.com/tcptrace/tcptrace/containers/cgroupv2"

// The cgroup v2 helpers live in containers/cgroupv2; these names remain
// for the tracer's callers.

// CgroupRoot returns where the cgroup v2 hierarchy is mounted: usually
// /sys/fs/cgroup, /sys/fs/cgroup/unified on hosts in hybrid mode.
func CgroupRoot() string { return cgroupv2.Root() }

// CgroupID returns the id of a cgroup v2 directory (its inode number, which
// is what the kernel's kernfs node id and bpf_get_current_cgroup_id are).
// path may be absolute or relative to the hierarchy's root
// ("/system.slice/x.service").
func CgroupID(path string) (uint64, error) { return cgroupv2.ID(path) }

// CgroupPaths names cgroup ids, with a cache.
type CgroupPaths = cgroupv2.Paths
