package containers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Endpoint is a container runtime's API socket.
type Endpoint struct {
	Runtime string // Containerd, CRIO, Docker or Podman
	Path    string // the unix socket
}

// DefaultEndpoints are where runtimes put their API sockets. Podman's is
// there only while `podman system service` runs (or its systemd socket).
func DefaultEndpoints() []Endpoint {
	return []Endpoint{
		{Podman, "/run/podman/podman.sock"},
		{Docker, "/var/run/docker.sock"},
		{Containerd, "/run/containerd/containerd.sock"},
		{Containerd, "/run/k3s/containerd/containerd.sock"},
		{CRIO, "/var/run/crio/crio.sock"},
	}
}

// ParseEndpoint reads a --runtime-endpoint value: RUNTIME=PATH, or a PATH
// (unix:// optional) whose file name says the runtime (docker.sock,
// podman.sock, containerd.sock, crio.sock).
func ParseEndpoint(s string) (Endpoint, error) {
	runtime, path, named := strings.Cut(s, "=")
	if !named {
		path, runtime = s, ""
	}
	path = strings.TrimPrefix(path, "unix://")
	if path == "" || !filepath.IsAbs(path) {
		return Endpoint{}, fmt.Errorf("%q: give RUNTIME=/path/to/socket (an absolute path)", s)
	}
	if runtime == "" {
		switch base := filepath.Base(path); {
		case strings.HasPrefix(base, "docker"):
			runtime = Docker
		case strings.HasPrefix(base, "podman"):
			runtime = Podman
		case strings.HasPrefix(base, "containerd"):
			runtime = Containerd
		case strings.HasPrefix(base, "crio"):
			runtime = CRIO
		default:
			return Endpoint{}, fmt.Errorf("%q: the file name does not say which runtime it is; give RUNTIME=%s with RUNTIME one of docker, podman, containerd, cri-o", s, path)
		}
	}
	switch runtime {
	case Docker, Podman, Containerd, CRIO:
	default:
		return Endpoint{}, fmt.Errorf("%q: unknown runtime %q (docker, podman, containerd or cri-o)", s, runtime)
	}
	return Endpoint{Runtime: runtime, Path: path}, nil
}

// reachable: a socket is there (the runtime may still not answer).
func (e Endpoint) reachable() bool {
	st, err := os.Stat(e.Path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// isCRI: the endpoint speaks the Kubernetes CRI over gRPC, not Docker's
// HTTP API.
func (e Endpoint) isCRI() bool { return e.Runtime == Containerd || e.Runtime == CRIO }

func (e Endpoint) String() string { return e.Runtime + "=" + e.Path }
