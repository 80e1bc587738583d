package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// MaxCgroups is how many cgroups a Config.CgroupSet filter holds (the
// kernel map cgroup_allow).
const MaxCgroups = 4096

// SetCgroups replaces the cgroup v2 ids a Config.CgroupSet filter lets
// through. The new ids go in before the old ones go out, so a cgroup in
// both is never dropped in between. Safe to call while Run reads.
func (t *Tracer) SetCgroups(ids []uint64) error {
	if !t.cfg.CgroupSet {
		return errors.New("SetCgroups: the tracer was not started with a cgroup set filter (Config.CgroupSet)")
	}
	if len(ids) > MaxCgroups {
		return fmt.Errorf("%d cgroups match, more than the %d the kernel filter holds", len(ids), MaxCgroups)
	}
	m := t.coll.Maps[tcptraceMapCgroupAllow]
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
		if err := m.Update(id, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("adding cgroup %d to the kernel filter: %w", id, err)
		}
	}
	var gone []uint64
	var id uint64
	var one uint8
	it := m.Iterate()
	for it.Next(&id, &one) {
		if !want[id] {
			gone = append(gone, id)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the kernel cgroup filter: %w", err)
	}
	for _, id := range gone {
		if err := m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing cgroup %d from the kernel filter: %w", id, err)
		}
	}
	return nil
}

// cgroupSetFlag is the value of the BPF constant filter_cgroup_map.
func cgroupSetFlag(cfg *Config) uint32 {
	if cfg.CgroupSet {
		return 1
	}
	return 0
}
