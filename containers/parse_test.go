package containers

import "testing"

const (
	id1 = "f3f36403528ae5c4a4b006dae77234ea32f930d329774e6a04779f865727cc22"
	id2 = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	uid = "7d5b9c3e-1f2a-4b3c-9d8e-0123456789ab"
	// The systemd driver writes a UID's dashes as underscores.
	uidSlice = "7d5b9c3e_1f2a_4b3c_9d8e_0123456789ab"
)

// Paths as runtimes make them (from /proc/PID/cgroup of real containers).
func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want *Info
	}{
		// Host processes.
		{"/", nil},
		{"/system.slice/nginx.service", nil},
		{"/user.slice/user-1000.slice/session-3.scope", nil},
		{"/kubepods.slice", nil},
		{"/kubepods.slice/kubepods-burstable.slice", nil},
		{"/system.slice/docker.service", nil},
		{"/docker", nil},
		{"/system.slice/docker-" + id1[:12] + ".scope", nil}, // not a full id
		{"/machine.slice/libpod-" + id1 + "x.scope", nil},

		// containerd (CRI), systemd driver: the three QoS classes.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSlice + ".slice/cri-containerd-" + id1 + ".scope",
			&Info{ID: id1, Runtime: Containerd, PodUID: uid}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSlice + ".slice/cri-containerd-" + id1 + ".scope",
			&Info{ID: id1, Runtime: Containerd, PodUID: uid}},
		{"/kubepods.slice/kubepods-pod" + uidSlice + ".slice/cri-containerd-" + id1 + ".scope",
			&Info{ID: id1, Runtime: Containerd, PodUID: uid}},
		// A process in a child cgroup of the container.
		{"/kubepods.slice/kubepods-pod" + uidSlice + ".slice/cri-containerd-" + id1 + ".scope/init",
			&Info{ID: id1, Runtime: Containerd, PodUID: uid}},
		// The pod's own cgroup: the pod is known, not the container.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSlice + ".slice",
			&Info{PodUID: uid}},
		// A static pod: its UID is a 32-hex hash.
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-" + id1 + ".scope",
			&Info{ID: id1, Runtime: Containerd, PodUID: "0123456789abcdef0123456789abcdef"}},

		// cgroupfs driver (kubelet --cgroup-driver=cgroupfs, k3s): the
		// runtime is not in the path.
		{"/kubepods/burstable/pod" + uid + "/" + id1, &Info{ID: id1, PodUID: uid}},
		{"/kubepods/besteffort/pod" + uid + "/" + id1, &Info{ID: id1, PodUID: uid}},
		{"/kubepods/pod" + uid + "/" + id1, &Info{ID: id1, PodUID: uid}},
		{"/kubepods/burstable/pod" + uid + "/crio-" + id1, &Info{ID: id1, Runtime: CRIO, PodUID: uid}},

		// CRI-O, and its monitor conmon, which is not the container.
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSlice + ".slice/crio-" + id1 + ".scope",
			&Info{ID: id1, Runtime: CRIO, PodUID: uid}},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSlice + ".slice/crio-conmon-" + id1 + ".scope", nil},

		// Docker: systemd and cgroupfs drivers; cri-dockerd in a pod.
		{"/system.slice/docker-" + id1 + ".scope", &Info{ID: id1, Runtime: Docker}},
		{"/docker/" + id1, &Info{ID: id1, Runtime: Docker}},
		{"/kubepods.slice/kubepods-pod" + uidSlice + ".slice/docker-" + id1 + ".scope",
			&Info{ID: id1, Runtime: Docker, PodUID: uid}},

		// Podman: cgroupfs (as on this test machine), systemd, crun's
		// "container" child, rootless, pods, conmon.
		{"/libpod_parent/libpod-" + id1, &Info{ID: id1, Runtime: Podman}},
		{"/machine.slice/libpod-" + id1 + ".scope", &Info{ID: id1, Runtime: Podman}},
		{"/machine.slice/libpod-" + id1 + ".scope/container", &Info{ID: id1, Runtime: Podman}},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id1 + ".scope", &Info{ID: id1, Runtime: Podman}},
		{"/machine.slice/machine-libpod_pod_" + id2 + ".slice/libpod-" + id1 + ".scope", &Info{ID: id1, Runtime: Podman}},
		{"/machine.slice/libpod-conmon-" + id1 + ".scope", nil},

		// Nested: Docker in Docker names the inner container.
		{"/docker/" + id2 + "/docker/" + id1, &Info{ID: id1, Runtime: Docker}},
		// A pod cgroup inside a container (kind): the inner pod's.
		{"/system.slice/docker-" + id2 + ".scope/kubepods/burstable/pod" + uid + "/" + id1, &Info{ID: id1, PodUID: uid}},
	} {
		got := ParsePath(tc.path)
		switch {
		case got == nil && tc.want == nil:
		case got == nil || tc.want == nil || *got != *tc.want:
			t.Errorf("ParsePath(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
		}
	}
}
