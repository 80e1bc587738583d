package containers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tcptrace/tcptrace/containers/cgroupv2"
)

// Filter finds the cgroups of the containers and pods asked for
// (--container, --pod), again and again, so that containers started later
// are followed.
type Filter struct {
	// Containers are names or id prefixes (at least MinIDPrefix hex
	// digits); Pods are NAME, NAMESPACE/NAME or a pod UID.
	Containers, Pods []string
	// Resolver names containers; required to match names.
	Resolver *Resolver
	// Root is the cgroup v2 hierarchy; "": cgroupv2.Root().
	Root string
	// Every is how often the hierarchy is walked again; 0: 1 s.
	Every time.Duration
}

// MinIDPrefix is the shortest container id prefix matched.
const MinIDPrefix = 4

// NeedsRuntime says which of the filter's values can only match through a
// runtime's API (names; ids and pod UIDs are in the cgroup paths).
func (f *Filter) NeedsRuntime() []string {
	var out []string
	for _, c := range f.Containers {
		if !isIDPrefix(c) {
			out = append(out, "--container "+c)
		}
	}
	for _, p := range f.Pods {
		if !isUID(p) {
			out = append(out, "--pod "+p)
		}
	}
	return out
}

func isIDPrefix(s string) bool { return len(s) >= MinIDPrefix && len(s) <= 64 && allHex(s) }

// Match walks the hierarchy once and returns the ids of the cgroups that
// belong to a matching container or pod (with their children), sorted.
func (f *Filter) Match(ctx context.Context) ([]uint64, error) {
	type dir struct {
		id   uint64
		info *Info
	}
	var dirs []dir
	err := cgroupv2.Walk(f.Root, func(id uint64, path string) {
		if info := ParsePath(path); info != nil {
			dirs = append(dirs, dir{id, info})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("walking the cgroup v2 hierarchy: %w", err)
	}
	// Name each container once, then match its cgroups and its pod's.
	named := make(map[string]*Info)
	pods := make(map[string]bool)
	askRuntime := f.Resolver != nil && len(f.NeedsRuntime()) > 0
	for _, d := range dirs {
		info := d.info
		if info.ID != "" {
			if named[info.ID] != nil {
				continue
			}
			if askRuntime {
				info = f.Resolver.Named(ctx, d.info)
			}
			named[d.info.ID] = info
		}
		if info.PodUID != "" && f.podMatches(info) {
			pods[info.PodUID] = true
		}
	}
	var ids []uint64
	for _, d := range dirs {
		info := d.info
		if n := named[info.ID]; n != nil {
			info = n
		}
		if pods[info.PodUID] && info.PodUID != "" || info.ID != "" && f.containerMatches(info) {
			ids = append(ids, d.id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (f *Filter) containerMatches(info *Info) bool {
	for _, c := range f.Containers {
		if info.Name != "" && info.Name == c || isIDPrefix(c) && strings.HasPrefix(info.ID, c) {
			return true
		}
	}
	return false
}

func (f *Filter) podMatches(info *Info) bool {
	for _, p := range f.Pods {
		if ns, name, ok := strings.Cut(p, "/"); ok {
			if info.Namespace == ns && info.Pod == name {
				return true
			}
		} else if info.Pod == p || info.PodUID == p {
			return true
		}
	}
	return false
}

// Run calls apply with the matching cgroups every f.Every until ctx is
// done, when they changed since the last call (last: what the caller
// applied already). A failed walk is reported to onErr and retried.
func (f *Filter) Run(ctx context.Context, last []uint64, apply func(ids []uint64), onErr func(error)) {
	every := f.Every
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ids, err := f.Match(ctx)
		if err != nil {
			if onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
			continue
		}
		if !slices.Equal(ids, last) {
			apply(ids)
			last = ids
		}
	}
}
