package containers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcptrace/tcptrace/containers/cgroupv2"
)

// Config tunes a Resolver. The zero value is usable.
type Config struct {
	// Endpoints are the runtime API sockets to ask for names; nil:
	// DefaultEndpoints(). Those whose socket is missing are skipped.
	Endpoints []Endpoint
	// CgroupPath names a cgroup v2 id ("" when unknown); nil: by handle,
	// or by walking the hierarchy (cgroupv2.Paths).
	CgroupPath func(id uint64) string
	// NameTTL is how long a runtime's answer is used before it is asked
	// again (a container may be renamed); 0: 5 minutes.
	NameTTL time.Duration
	// RetryAfter is how long a container no runtime could name waits
	// before it is asked about again (the API may start later); 0: 10 s.
	RetryAfter time.Duration
	// Timeout bounds one API call; 0: 2 s.
	Timeout time.Duration
	// MaxCgroups and MaxContainers bound the caches; 0: 16384 and 4096.
	MaxCgroups, MaxContainers int
}

// Resolver names the container of a cgroup: from the cgroup's path at
// once, and from the runtime's API in the background. Safe for concurrent
// use.
type Resolver struct {
	cfg  Config
	path func(uint64) string

	mu       sync.Mutex
	byCgroup *lru[uint64, *cgroupEntry]
	names    *lru[string, nameEntry]
	pending  map[string]bool // container ids queued or being asked about
	jobs     chan Info       // the ids (and runtime, if known) to ask about

	clientsMu sync.Mutex
	clients   map[Endpoint]apiClient
	lastErr   error

	// clock is a coarse now (Unix ns), advanced every clockTick by a
	// goroutine of its own: Lookup runs for every record, and reading the
	// time there cost a fifth of the loader's CPU under churn; the TTLs it
	// is compared with are seconds.
	clock     atomic.Int64
	clockDone chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// clockTick is how often Resolver.clock advances.
const clockTick = 250 * time.Millisecond

// cgroupEntry is what a cgroup id is known to be.
type cgroupEntry struct {
	base    *Info     // from the path; nil: a host cgroup (or not found yet)
	info    *Info     // base with the runtime's names, as handed out
	nameAt  time.Time // the names entry merged into info
	retryAt time.Time // a path not found: when to look again
}

// nameEntry is a runtime's answer about a container id.
type nameEntry struct {
	info  Info
	found bool
	at    time.Time
}

// apiClient asks one runtime about a container.
type apiClient interface {
	inspect(ctx context.Context, id string) (Info, error)
	close()
}

// queueLen bounds the ids waiting for the API; more wait for a later call.
const queueLen = 256

// NewResolver starts a resolver and its one background worker; Close
// stops them.
func NewResolver(cfg Config) *Resolver {
	if cfg.Endpoints == nil {
		cfg.Endpoints = DefaultEndpoints()
	}
	if cfg.NameTTL <= 0 {
		cfg.NameTTL = 5 * time.Minute
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxCgroups <= 0 {
		cfg.MaxCgroups = 16384
	}
	if cfg.MaxContainers <= 0 {
		cfg.MaxContainers = 4096
	}
	r := &Resolver{
		cfg:       cfg,
		path:      cfg.CgroupPath,
		byCgroup:  newLRU[uint64, *cgroupEntry](cfg.MaxCgroups),
		names:     newLRU[string, nameEntry](cfg.MaxContainers),
		pending:   make(map[string]bool),
		jobs:      make(chan Info, queueLen),
		clients:   make(map[Endpoint]apiClient),
		done:      make(chan struct{}),
		clockDone: make(chan struct{}),
	}
	r.clock.Store(time.Now().UnixNano())
	if r.path == nil {
		var paths cgroupv2.Paths
		r.path = paths.Path
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.work(ctx)
	go r.tick(ctx)
	return r
}

// tick advances the coarse clock until ctx is done.
func (r *Resolver) tick(ctx context.Context) {
	defer close(r.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.clock.Store(now.UnixNano())
		}
	}
}

// Close stops the worker and closes the API connections.
func (r *Resolver) Close() {
	r.cancel()
	<-r.done
	<-r.clockDone
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	for _, c := range r.clients {
		c.close()
	}
	r.clients = map[Endpoint]apiClient{}
}

// Lookup is a LookupFunc: the container of a cgroup as known now, nil for
// a host process. Its first call for a cgroup reads the cgroup's path (one
// open_by_handle_at) and gives the ids; names come from the runtime in the
// background, for later calls.
func (r *Resolver) Lookup(cgroup uint64) *Info {
	if cgroup == 0 {
		return nil
	}
	now := time.Unix(0, r.clock.Load())
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byCgroup.get(cgroup)
	if !ok || e.base == nil && !e.retryAt.IsZero() && now.After(e.retryAt) {
		e = r.learn(cgroup, now)
	}
	if e.base == nil || e.base.ID == "" {
		return e.info
	}
	n, ok := r.names.get(e.base.ID)
	if ok && !n.at.Equal(e.nameAt) {
		e.info, e.nameAt = merge(e.base, n), n.at
	}
	if !ok || r.stale(n, now) {
		r.enqueue(*e.base)
	}
	return e.info
}

// learn reads a cgroup's path and what it says, with r.mu held. The path
// is found without blocking: a syscall on kernfs, or (without
// CAP_DAC_READ_SEARCH) a walk at most once a second.
func (r *Resolver) learn(cgroup uint64, now time.Time) *cgroupEntry {
	e := &cgroupEntry{}
	path := r.path(cgroup)
	if path == "" {
		// Removed, or not walked yet: look again later.
		e.retryAt = now.Add(time.Second)
	} else if info := ParsePath(path); info != nil {
		e.base, e.info = info, info
	}
	r.byCgroup.put(cgroup, e)
	return e
}

func (r *Resolver) stale(n nameEntry, now time.Time) bool {
	if n.found {
		return now.Sub(n.at) > r.cfg.NameTTL
	}
	return now.Sub(n.at) > r.cfg.RetryAfter
}

// enqueue asks the worker about a container, with r.mu held; never blocks.
func (r *Resolver) enqueue(base Info) {
	if r.pending[base.ID] {
		return
	}
	select {
	case r.jobs <- base:
		r.pending[base.ID] = true
	default: // the worker is behind: a later Lookup asks again
	}
}

// merge adds what the runtime said to what the path said.
func merge(base *Info, n nameEntry) *Info {
	info := *base
	if !n.found {
		return &info
	}
	info.Name, info.Pod, info.Namespace = n.info.Name, n.info.Pod, n.info.Namespace
	if info.Runtime == "" {
		info.Runtime = n.info.Runtime
	}
	if info.PodUID == "" {
		info.PodUID = n.info.PodUID
	}
	return &info
}

func (r *Resolver) work(ctx context.Context) {
	defer close(r.done)
	for {
		select {
		case <-ctx.Done():
			return
		case base := <-r.jobs:
			n := r.ask(ctx, base)
			r.mu.Lock()
			r.names.put(base.ID, n)
			delete(r.pending, base.ID)
			r.mu.Unlock()
		}
	}
}

// Named returns base with the names the runtime gives, asking it now if
// they are not cached (blocking up to the Timeout per runtime). For the
// filters' goroutine, not for the event path.
func (r *Resolver) Named(ctx context.Context, base *Info) *Info {
	if base.ID == "" {
		return base
	}
	now := time.Now()
	r.mu.Lock()
	n, ok := r.names.get(base.ID)
	r.mu.Unlock()
	if !ok || r.stale(n, now) {
		n = r.ask(ctx, *base)
		r.mu.Lock()
		r.names.put(base.ID, n)
		r.mu.Unlock()
	}
	return merge(base, n)
}

// ask asks the runtimes that may know the container: the one its path
// names, or (when the path does not say) the CRI runtimes, then Docker.
func (r *Resolver) ask(ctx context.Context, base Info) nameEntry {
	var lastErr error
	for _, ep := range r.candidates(base.Runtime) {
		c, err := r.client(ep)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		info, err := c.inspect(cctx, base.ID)
		cancel()
		if err == nil {
			return nameEntry{info: info, found: true, at: time.Now()}
		}
		if !errors.Is(err, errNotFound) {
			lastErr = err
		}
	}
	if lastErr != nil {
		r.clientsMu.Lock()
		r.lastErr = lastErr
		r.clientsMu.Unlock()
	}
	return nameEntry{at: time.Now()}
}

// candidates are the reachable endpoints that may know a container of
// this runtime ("" unknown: CRI first).
func (r *Resolver) candidates(runtime string) []Endpoint {
	var out, docker []Endpoint
	for _, ep := range r.cfg.Endpoints {
		if runtime != "" && ep.Runtime != runtime || !ep.reachable() {
			continue
		}
		if runtime == "" && !ep.isCRI() {
			docker = append(docker, ep)
			continue
		}
		out = append(out, ep)
	}
	return append(out, docker...)
}

func (r *Resolver) client(ep Endpoint) (apiClient, error) {
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	if c, ok := r.clients[ep]; ok {
		return c, nil
	}
	var c apiClient
	if ep.isCRI() {
		cri, err := newCRIAPI(ep)
		if err != nil {
			return nil, err
		}
		c = cri
	} else {
		c = newDockerAPI(ep)
	}
	r.clients[ep] = c
	return c, nil
}

// Reachable lists the endpoints whose socket is there now.
func (r *Resolver) Reachable() []Endpoint {
	var out []Endpoint
	for _, ep := range r.cfg.Endpoints {
		if ep.reachable() {
			out = append(out, ep)
		}
	}
	return out
}

// LastError is the last error a runtime's API gave (not "no such
// container"), for diagnostics; nil if none.
func (r *Resolver) LastError() error {
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	return r.lastErr
}
