package metrics

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The label scheme. Every per-connection family carries the base labels:
//
//	port       the service port: the remote port for a client, the local
//	           port for a server or a listener (bounded by the host's
//	           listeners); a client's remote port inside the ephemeral range
//	           (ip_local_port_range) is "ephemeral", as is a connection of
//	           unknown role whose two ports are both in it.
//	container  the container's name (its short id when the runtime gave no
//	           name), "" for host processes
//	pod, namespace  Kubernetes pod and namespace, "" outside Kubernetes
//
// then the extra labels asked for with --metrics-labels, in the order given.
// No label names a single connection or peer unless asked for.
var baseLabels = []string{"port", "container", "pod", "namespace"}

// ephemeralValue is the port label of a port in the ephemeral range.
const ephemeralValue = "ephemeral"

// ExtraLabels are the labels --metrics-labels may add, each one of a
// connection's fields. They multiply the series count by the number of
// distinct values (per peer for remote_addr): use them on small hosts or
// with a low --metrics-max-series.
var ExtraLabels = map[string]func(c *timeline.Connection) string{
	"remote_addr": func(c *timeline.Connection) string { return c.RAddr.String() },
	"local_addr":  func(c *timeline.Connection) string { return c.LAddr.String() },
	"remote_port": func(c *timeline.Connection) string { return strconv.Itoa(int(c.RPort)) },
	"local_port":  func(c *timeline.Connection) string { return strconv.Itoa(int(c.LPort)) },
	"comm":        func(c *timeline.Connection) string { return validUTF8(c.Comm) },
	"uid":         func(c *timeline.Connection) string { return strconv.FormatUint(uint64(c.UID), 10) },
	"netns":       func(c *timeline.Connection) string { return strconv.FormatUint(uint64(c.NetNS), 10) },
}

// ExtraLabelNames lists the allowed extra labels, sorted.
func ExtraLabelNames() []string {
	names := make([]string, 0, len(ExtraLabels))
	for n := range ExtraLabels {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CheckExtraLabels validates --metrics-labels.
func CheckExtraLabels(names []string) error {
	seen := make(map[string]bool)
	for _, n := range names {
		if ExtraLabels[n] == nil {
			return fmt.Errorf("unknown label %q (allowed: %s)", n, strings.Join(ExtraLabelNames(), ", "))
		}
		if seen[n] {
			return fmt.Errorf("label %q given twice", n)
		}
		seen[n] = true
	}
	return nil
}

// PortRange is the ephemeral port range, inclusive.
type PortRange struct{ Low, High uint16 }

// DefaultEphemeral is Linux's default ip_local_port_range.
var DefaultEphemeral = PortRange{32768, 60999}

func (r PortRange) contains(p uint16) bool { return p >= r.Low && p <= r.High }

// ReadEphemeral reads the ephemeral port range of this process's network
// namespace (/proc/sys/net/ipv4/ip_local_port_range).
func ReadEphemeral() (PortRange, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return DefaultEphemeral, err
	}
	return parsePortRange(string(b))
}

func parsePortRange(s string) (PortRange, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return DefaultEphemeral, fmt.Errorf("ip_local_port_range: want two ports, got %q", s)
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return DefaultEphemeral, fmt.Errorf("ip_local_port_range: not a port range: %q", s)
	}
	return PortRange{uint16(lo), uint16(hi)}, nil
}

// servicePort is the port label of a connection.
func (r PortRange) servicePort(c *timeline.Connection) string {
	switch c.Role {
	case timeline.RoleServer, timeline.RoleListener:
		return strconv.Itoa(int(c.LPort))
	case timeline.RoleClient:
		if r.contains(c.RPort) {
			return ephemeralValue
		}
		return strconv.Itoa(int(c.RPort))
	}
	// Unknown (older than tracing): the end outside the ephemeral range is
	// the service, the local one first (a listener's port).
	switch {
	case !r.contains(c.LPort):
		return strconv.Itoa(int(c.LPort))
	case !r.contains(c.RPort):
		return strconv.Itoa(int(c.RPort))
	}
	return ephemeralValue
}

// containerLabels returns container, pod and namespace for a cgroup.
func containerLabels(lookup containers.LookupFunc, cgroup uint64) (container, pod, namespace string) {
	if lookup == nil || cgroup == 0 {
		return "", "", ""
	}
	info := lookup(cgroup)
	if info == nil {
		return "", "", ""
	}
	container = info.Name
	if container == "" {
		container = info.ID
		if len(container) > 12 {
			container = container[:12] // as docker and podman show ids
		}
	}
	return validUTF8(container), validUTF8(info.Pod), validUTF8(info.Namespace)
}

// validUTF8: label values must be UTF-8, and a process may name itself with
// any bytes.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
