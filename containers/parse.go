package containers

import "strings"

// Runtime names, as Info.Runtime and --runtime-endpoint spell them.
const (
	Containerd = "containerd"
	CRIO       = "cri-o"
	Docker     = "docker"
	Podman     = "podman"
)

// containerUnit is a cgroup directory name that holds one container:
// prefix + 64-hex id + optional suffix.
type containerUnit struct {
	prefix  string
	runtime string
	monitor bool // conmon, the runtime's monitor process: not the container
}

// The longer prefixes first: "crio-conmon-" before "crio-".
var containerUnits = []containerUnit{
	{"cri-containerd-", Containerd, false},
	{"crio-conmon-", CRIO, true},
	{"crio-", CRIO, false},
	{"docker-", Docker, false},
	{"libpod-conmon-", Podman, true},
	{"libpod-", Podman, false},
}

// ParsePath tells which container a cgroup v2 path belongs to, from the
// names runtimes give their cgroups; nil for a host process, or for a
// runtime's monitor (conmon). Names come later, from the runtime's API.
//
// systemd driver:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//
//	/system.slice/docker-<id>.scope, /machine.slice/libpod-<id>.scope[/container]
//
// cgroupfs driver: /kubepods/burstable/pod<uid>/<id>, /docker/<id>, /libpod_parent/libpod-<id>
//
// Nested containers: the innermost container found wins.
func ParsePath(path string) *Info {
	var info Info
	found, kube, monitor := false, false, false
	prev := ""
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		switch {
		case seg == "kubepods" || seg == "kubepods.slice":
			kube = true
		case kube && podUID(seg) != "":
			info.PodUID = podUID(seg)
			// A new pod: what was found above it is not this pod's.
			found, monitor, info.ID, info.Runtime = false, false, "", ""
		default:
			if u, id, ok := parseUnit(seg); ok {
				found, monitor = true, u.monitor
				info.ID, info.Runtime = id, u.runtime
			} else if isContainerID(seg) && (prev == "docker" || info.PodUID != "") {
				// cgroupfs: /docker/<id>; /kubepods/<qos>/pod<uid>/<id>,
				// where the runtime is not in the name.
				found, monitor = true, false
				info.ID, info.Runtime = seg, ""
				if prev == "docker" {
					info.Runtime = Docker
				}
			}
		}
		prev = seg
	}
	if monitor || !found && info.PodUID == "" {
		return nil
	}
	return &info
}

// parseUnit matches "<prefix><64 hex>[.scope]".
func parseUnit(seg string) (containerUnit, string, bool) {
	for _, u := range containerUnits {
		rest, ok := strings.CutPrefix(seg, u.prefix)
		if !ok {
			continue
		}
		rest = strings.TrimSuffix(rest, ".scope")
		if isContainerID(rest) {
			return u, rest, true
		}
		if !u.monitor {
			return containerUnit{}, "", false
		}
	}
	return containerUnit{}, "", false
}

// podUID returns the pod's UID from a kubepods cgroup name, "" if seg is
// not one: "pod<uid>" (cgroupfs), "kubepods[-<qos>]-pod<uid_>.slice"
// (systemd, which writes the UID's dashes as underscores).
func podUID(seg string) string {
	if rest, ok := strings.CutPrefix(seg, "pod"); ok && isUID(rest) {
		return rest
	}
	if !strings.HasPrefix(seg, "kubepods-") || !strings.HasSuffix(seg, ".slice") {
		return ""
	}
	i := strings.LastIndex(seg, "pod")
	if i < 0 || seg[i-1] != '-' {
		return ""
	}
	uid := strings.ReplaceAll(strings.TrimSuffix(seg[i+3:], ".slice"), "_", "-")
	if !isUID(uid) {
		return ""
	}
	return uid
}

// isUID: a Kubernetes UID, 8-4-4-4-12 hex digits (static pods use a
// 32-hex hash, accepted too).
func isUID(s string) bool {
	switch len(s) {
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHex(s[i]) {
				return false
			}
		}
		return true
	case 32:
		return allHex(s)
	}
	return false
}

// isContainerID: 64 lowercase hex digits, as every runtime here writes.
func isContainerID(s string) bool { return len(s) == 64 && allHex(s) }

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return s != ""
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
