// Package containers names the container and pod a socket belongs to, from
// the socket's cgroup v2 id: the cgroup path says which runtime and which
// container id, and the runtime's API (when reachable) gives the names.
package containers

// Info identifies the container of a socket. A host process has none (nil).
// Fields the cgroup path or the runtime could not tell are empty.
type Info struct {
	ID        string `json:"id"`        // the runtime's container id (64 hex digits for most)
	Name      string `json:"name"`      // the container's name, from the runtime's API
	Runtime   string `json:"runtime"`   // containerd, cri-o, docker, podman
	Pod       string `json:"pod"`       // Kubernetes pod name
	Namespace string `json:"namespace"` // Kubernetes namespace
	PodUID    string `json:"pod_uid"`   // from the kubepods cgroup path
}

// LookupFunc returns the container of a cgroup v2 id, nil for host
// processes or when unknown. It never blocks: what is not cached yet is
// looked up in the background and returned by a later call.
type LookupFunc func(cgroup uint64) *Info
