// Package deploy holds no code: it is where the container image
// (Containerfile, built by `make image`) and the Kubernetes manifests
// (daemonset.yaml, podmonitor.yaml) live, and its tests check them: the
// manifests decoded strictly into the Kubernetes API types and held to what
// tcptrace needs, the image built and run under the DaemonSet's privileges.
package deploy
