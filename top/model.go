// Package top is the model behind tcptrace top: it aggregates connection
// records, kernel events of note and the open connections by group
// (process, container, pod, service port, remote endpoint), keeps rates
// and handshake percentiles, and renders a screen of a given size as a
// string. It holds no terminal and no clock: times are passed in, so that
// it can be tested with synthetic input.
package top

import (
	"net/netip"
	"strconv"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// GroupBy is what rows stand for.
type GroupBy uint8

// Groupings, in the order the g key cycles through them.
const (
	ByProcess GroupBy = iota
	ByContainer
	ByPod
	ByPort
	ByRemote
	numGroupBy
)

var groupNames = [...]string{"process", "container", "pod", "port", "remote"}

func (g GroupBy) String() string { return groupNames[g] }

// ParseGroupBy reads a grouping's name.
func ParseGroupBy(s string) (GroupBy, bool) {
	for i, n := range groupNames {
		if n == s {
			return GroupBy(i), true
		}
	}
	return 0, false
}

// GroupNames lists the groupings, for help texts.
func GroupNames() []string { return groupNames[:] }

// Conn identifies a connection for grouping: from a record, a live
// connection or an alert.
type Conn struct {
	PID    uint32
	Comm   string
	Cgroup uint64
	Role   timeline.Role
	LPort  uint16
	RPort  uint16
	RAddr  netip.Addr
}

// ConnOf, LiveOf and AlertOf take a Conn from what the correlator gives.
func ConnOf(c *timeline.Connection) Conn {
	return Conn{c.PID, c.Comm, c.Cgroup, c.Role, c.LPort, c.RPort, c.RAddr}
}

// LiveOf is ConnOf for an open connection.
func LiveOf(c *timeline.LiveConn) Conn {
	return Conn{c.PID, c.Comm, c.Cgroup, c.Role, c.LPort, c.RPort, c.RAddr}
}

// counter is what is counted per second in a group.
type counter uint8

// Counters.
const (
	cNew counter = iota
	cRefused
	cTimeout
	cReset
	cRetrans
	cRST
	numCounters
)

// Event kinds the caller counts (Model.Count).
const (
	NewConn = cNew     // a connect() or an accepted connection
	Retrans = cRetrans // a retransmission (SYN or data)
	RST     = cRST     // a RST sent or received
)

// Config bounds and times the model.
type Config struct {
	// MaxGroups bounds the groups kept per grouping; past it the least
	// recently active is dropped.
	MaxGroups int
	// RateWindow (ns) is what rates are averaged over.
	RateWindow int64
	// StuckAfter (ns): a connection in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or
	// SYN_RECV this long is stuck (the alerts' threshold). 0: none is.
	StuckAfter int64
	// Records kept per group for the detail view; alerts kept.
	Records, Alerts int
	// Container names a cgroup (nil: no containers known).
	Container containers.LookupFunc
}

// DefaultConfig is what tcptrace top uses unless told otherwise.
func DefaultConfig() Config {
	return Config{MaxGroups: 1000, RateWindow: 5e9, StuckAfter: 30e9, Records: 8, Alerts: 50}
}

// groupKey identifies a group; fields a grouping does not use are zero.
type groupKey struct {
	pid  uint32
	comm string
	id   string // container id, or pod
	port uint16
	out  bool // port: a remote service (this host is the client)
	addr netip.Addr
}

// group is one row's state.
type group struct {
	key    groupKey
	label  string
	active int64 // last touched (ns), for eviction

	buckets [rateBuckets]bucket
	tw      [twBuckets]twBucket // handed to TIME_WAIT, per second
	hs      []int64             // last handshake times (ns), a ring
	hsNext  int
	records []*timeline.Connection // a ring
	recNext int
	recN    uint64

	// Open connections by state, rebuilt at each snapshot of the grouping.
	open      [numStates]int
	oldest    int64 // since when the oldest stuck connection is stuck (0: none)
	oldestSt  timeline.State
	oldestUnk bool
	stuck     int
}

// bucket counts one second.
type bucket struct {
	sec int64
	n   [numCounters]uint32
}

// twBucket counts the connections handed to TIME_WAIT in one second.
type twBucket struct {
	sec int64
	n   uint32
}

const (
	rateBuckets = 16 // seconds: the longest rate window, and 2 more
	twBuckets   = 64 // TIME_WAIT lasts 60 s (the kernel's TCP_TIMEWAIT_LEN)
	twSeconds   = 60
	maxHS       = 128 // handshake samples per group
)

// Model aggregates what tcptrace sees. It is not safe for concurrent use.
type Model struct {
	cfg     Config
	groups  [numGroupBy]map[groupKey]*group
	start   int64
	alerts  []Alert // a ring
	alertAt int
	alertN  uint64
	dropped [numGroupBy]uint64 // groups evicted
	// recent are the groups last used, per grouping: consecutive events
	// are mostly of the same few groups, and comparing keys costs less
	// than hashing them.
	recent [numGroupBy][recentGroups]*group
	next   [numGroupBy]int
}

const recentGroups = 4

// New returns an empty model started at now (Unix ns).
func New(cfg Config, now int64) *Model {
	def := DefaultConfig()
	if cfg.MaxGroups <= 0 {
		cfg.MaxGroups = def.MaxGroups
	}
	if cfg.RateWindow <= 0 || cfg.RateWindow > (rateBuckets-2)*1e9 {
		cfg.RateWindow = def.RateWindow
	}
	if cfg.Records <= 0 {
		cfg.Records = def.Records
	}
	if cfg.Alerts <= 0 {
		cfg.Alerts = def.Alerts
	}
	m := &Model{cfg: cfg, start: now}
	for i := range m.groups {
		m.groups[i] = make(map[groupKey]*group)
	}
	return m
}

// keyOf is the group of c under g.
func (m *Model) keyOf(g GroupBy, c *Conn) groupKey {
	switch g {
	case ByProcess:
		return groupKey{pid: c.PID, comm: c.Comm}
	case ByContainer, ByPod:
		id, _ := containerID(g, m.container(c.Cgroup))
		return groupKey{id: id}
	case ByPort:
		port, out := servicePort(c)
		return groupKey{port: port, out: out}
	}
	k := groupKey{addr: c.RAddr}
	if c.Role != timeline.RoleServer {
		// A client's peers are services; a server's peers come from
		// ports of their choosing, one per connection: by address only.
		k.port = c.RPort
	}
	return k
}

// labelOf is what the row of group k of c under g is called.
func (m *Model) labelOf(g GroupBy, c *Conn, k groupKey) string {
	switch g {
	case ByProcess:
		return processLabel(c.PID, c.Comm)
	case ByContainer, ByPod:
		_, label := containerID(g, m.container(c.Cgroup))
		return label
	case ByPort:
		return portLabel(k.port, k.out)
	}
	return endpointLabel(k.addr, k.port)
}

func (m *Model) container(cgroup uint64) *containers.Info {
	if cgroup == 0 || m.cfg.Container == nil {
		return nil
	}
	return m.cfg.Container(cgroup)
}

// servicePort is the port of the service: ours for a server or a
// listener, the peer's for a client. A connection whose role is not known
// takes the lower port, services' ports being below the ephemeral range.
func servicePort(c *Conn) (uint16, bool) {
	switch c.Role {
	case timeline.RoleServer, timeline.RoleListener:
		return c.LPort, false
	case timeline.RoleClient:
		return c.RPort, true
	}
	if c.RPort != 0 && c.RPort < c.LPort {
		return c.RPort, true
	}
	return c.LPort, false
}

func processLabel(pid uint32, comm string) string {
	if pid == 0 {
		return "(no owner known)"
	}
	return Sanitize(comm) + "[" + strconv.FormatUint(uint64(pid), 10) + "]"
}

func containerID(g GroupBy, info *containers.Info) (id, label string) {
	if g == ByPod {
		switch {
		case info == nil || info.Pod == "" && info.PodUID == "":
			return "", "(no pod)"
		case info.Pod != "":
			return info.Namespace + "/" + info.Pod, Sanitize(info.Namespace + "/" + info.Pod)
		}
		return info.PodUID, "pod " + Sanitize(info.PodUID)
	}
	switch {
	case info == nil || info.ID == "" && info.Name == "":
		return "", "(host)"
	case info.Name != "":
		return info.ID, Sanitize(info.Name)
	}
	return info.ID, Sanitize(info.ID[:min(12, len(info.ID))])
}

func portLabel(port uint16, out bool) string {
	p := strconv.FormatUint(uint64(port), 10)
	if out {
		return "→:" + p
	}
	return ":" + p
}

func endpointLabel(a netip.Addr, port uint16) string {
	if !a.IsValid() {
		return "(unknown)"
	}
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

// Sanitize replaces what a terminal would interpret (escape sequences,
// control characters) in names that come from processes.
func Sanitize(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd || r >= 0x80 && r < 0xa0 {
			goto rewrite
		}
	}
	return s
rewrite:
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd || r >= 0x80 && r < 0xa0 {
			r = '?'
		}
		b = append(b, r)
	}
	return string(b)
}

// get finds or makes the group of c under g, evicting the least recently
// active one when full.
func (m *Model) get(g GroupBy, c *Conn, now int64) *group {
	k := m.keyOf(g, c)
	var gr *group
	for _, r := range &m.recent[g] {
		if r != nil && r.key == k {
			gr = r
			break
		}
	}
	if gr == nil {
		gr = m.groups[g][k]
		if gr != nil {
			m.remember(g, gr)
		}
	}
	if gr == nil {
		if len(m.groups[g]) >= m.cfg.MaxGroups {
			m.evict(g)
		}
		gr = &group{key: k, label: m.labelOf(g, c, k)}
		m.groups[g][k] = gr
		m.remember(g, gr)
	} else if g == ByContainer && k.id != "" && gr.label == k.id[:min(12, len(k.id))] {
		gr.label = m.labelOf(g, c, k) // the runtime's name may come later than the id
	}
	gr.active = now
	return gr
}

func (m *Model) remember(g GroupBy, gr *group) {
	m.recent[g][m.next[g]] = gr
	m.next[g] = (m.next[g] + 1) % recentGroups
}

func (m *Model) evict(g GroupBy) {
	m.recent[g] = [recentGroups]*group{}
	var victim *group
	for _, gr := range m.groups[g] {
		if victim == nil || gr.active < victim.active {
			victim = gr
		}
	}
	delete(m.groups[g], victim.key)
	m.dropped[g]++
}

func (gr *group) add(c counter, now int64) {
	sec := now / 1e9
	b := &gr.buckets[sec%rateBuckets]
	if b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.n[c]++
}

// Count counts one event of kind (New, Retrans, RST) of connection c at now.
func (m *Model) Count(kind counter, c *Conn, now int64) {
	for g := range numGroupBy {
		m.get(g, c, now).add(kind, now)
	}
}

// Handshake counts a client's handshake time (connect() to ESTABLISHED).
func (m *Model) Handshake(c *Conn, d int64, now int64) {
	for g := range numGroupBy {
		gr := m.get(g, c, now)
		if len(gr.hs) < maxHS {
			gr.hs = append(gr.hs, d)
			continue
		}
		gr.hs[gr.hsNext] = d
		gr.hsNext = (gr.hsNext + 1) % maxHS
	}
}

// Record takes a finished connection record: its failure, whether it went
// to TIME_WAIT, and a copy for the detail view. c is not kept.
func (m *Model) Record(c *timeline.Connection, now int64) {
	conn := ConnOf(c)
	var kind counter = numCounters
	switch c.Outcome {
	case timeline.OutcomeRefused:
		kind = cRefused
	case timeline.OutcomeTimeout:
		kind = cTimeout
	case timeline.OutcomeResetByPeer, timeline.OutcomeResetLocal:
		kind = cReset
	}
	timeWait := wentToTimeWait(c)
	cp := c.Clone()
	for g := range numGroupBy {
		gr := m.get(g, &conn, now)
		if kind != numCounters {
			gr.add(kind, now)
		}
		if timeWait {
			sec := now / 1e9
			b := &gr.tw[sec%twBuckets]
			if b.sec != sec {
				*b = twBucket{sec: sec}
			}
			b.n++
		}
		gr.keep(cp, m.cfg.Records)
	}
}

func (gr *group) keep(c *timeline.Connection, n int) {
	gr.recN++
	if len(gr.records) < n {
		gr.records = append(gr.records, c)
		return
	}
	gr.records[gr.recNext] = c
	gr.recNext = (gr.recNext + 1) % n
}

// wentToTimeWait: the record ended with the kernel handing the connection
// to a timewait socket in TIME_WAIT.
func wentToTimeWait(c *timeline.Connection) bool {
	for i := len(c.Steps) - 1; i >= 0; i-- {
		if s := &c.Steps[i]; s.Kind == timeline.StepState && s.TimewaitSocket {
			return s.To == timeline.StateTimeWait
		}
	}
	return false
}
