package cmd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer"
)

// containerOptions are the --container, --pod and --runtime-endpoint flags.
type containerOptions struct {
	containers       []string
	pods             []string
	runtimeEndpoints []string
}

// containerConfig validates the container flags and turns them into the
// tracer's cgroup set filter.
func (o *options) containerConfig(cfg *tracer.Config) error {
	for _, c := range o.ctr.containers {
		if c == "" {
			return usagef("--container needs a container name or id")
		}
	}
	for _, p := range o.ctr.pods {
		if p == "" || strings.Count(p, "/") > 1 || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			return usagef("--pod %q: give NAME, NAMESPACE/NAME or a pod UID", p)
		}
	}
	if _, err := o.endpoints(); err != nil {
		return err
	}
	if len(o.ctr.containers)+len(o.ctr.pods) == 0 {
		return nil
	}
	if o.cgroup != "" {
		return usagef("--cgroup and --container/--pod exclude each other: a container is a set of cgroups; give one or the other")
	}
	cfg.CgroupSet = true
	return nil
}

// endpoints are the runtime APIs to ask: --runtime-endpoint, or the usual
// sockets.
func (o *options) endpoints() ([]containers.Endpoint, error) {
	if len(o.ctr.runtimeEndpoints) == 0 {
		return nil, nil // the resolver's defaults
	}
	var eps []containers.Endpoint
	for _, s := range o.ctr.runtimeEndpoints {
		ep, err := containers.ParseEndpoint(s)
		if err != nil {
			return nil, usagef("--runtime-endpoint %v", err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// newResolver makes the resolver that names the containers of sockets.
func (o *options) newResolver() *containers.Resolver {
	eps, _ := o.endpoints() // validated by containerConfig
	return containers.NewResolver(containers.Config{Endpoints: eps})
}

// startContainerFilter fills the kernel's cgroup set with the cgroups of
// the containers and pods asked for, and keeps it up to date as they come
// and go, until the returned stop is called (before the tracer closes).
func (o *options) startContainerFilter(ctx context.Context, t *tracer.Tracer, r *containers.Resolver) (stop func(), err error) {
	if len(o.ctr.containers)+len(o.ctr.pods) == 0 {
		return func() {}, nil
	}
	f := &containers.Filter{Containers: o.ctr.containers, Pods: o.ctr.pods, Resolver: r}
	if need := f.NeedsRuntime(); len(need) > 0 && len(r.Reachable()) == 0 {
		return nil, fmt.Errorf("%s: matching names needs a container runtime's API, and none is reachable (tried %s); "+
			"start it (podman: podman system service), point --runtime-endpoint at its socket, "+
			"or give a container id (at least %d hex digits) or a pod UID instead",
			strings.Join(need, ", "), endpointList(o), containers.MinIDPrefix)
	}
	ids, err := f.Match(ctx)
	if err != nil {
		return nil, err
	}
	if err := t.SetCgroups(ids); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		fmt.Fprintf(os.Stderr, "tcptrace: %s match no running container yet; containers started later are followed\n",
			filterList(o))
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var lastErr string
		report := func(err error) {
			if err.Error() != lastErr { // once per distinct error
				fmt.Fprintf(os.Stderr, "tcptrace: %v\n", err)
				lastErr = err.Error()
			}
		}
		f.Run(ctx, ids, func(ids []uint64) {
			if err := t.SetCgroups(ids); err != nil {
				report(err)
			}
		}, report)
	}()
	return func() { cancel(); wg.Wait() }, nil
}

func endpointList(o *options) string {
	eps, _ := o.endpoints()
	if eps == nil {
		eps = containers.DefaultEndpoints()
	}
	var s []string
	for _, ep := range eps {
		s = append(s, ep.Path)
	}
	return strings.Join(s, ", ")
}

func filterList(o *options) string {
	var s []string
	for _, c := range o.ctr.containers {
		s = append(s, "--container "+c)
	}
	for _, p := range o.ctr.pods {
		s = append(s, "--pod "+p)
	}
	return strings.Join(s, ", ")
}
