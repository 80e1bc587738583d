/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every program shares: the per-socket state, the load-time settings
 * (filters, batching), the maps, a socket's tuple, and the ring buffer.
 */
#ifndef TCPTRACE_COMMON_H
#define TCPTRACE_COMMON_H

struct owner {
	__u32 pid;
	char comm[COMM_LEN];
};

struct listener_key {
	__u32 netns;
	__u32 port;
};

struct sk_state {
	/* The cookie of the socket the queue belongs to. BPF_F_CLONE copies a
	 * listener's storage into each socket accepted from it: a cookie that
	 * is not this socket's means a fresh copy, whose queue is not its own. */
	__u64 cookie;
	struct owner owner;   /* pid 0: not known */
	/* The owner was copied from the listener by the clone: in a prefork
	 * server the worker that accept()s it is the real one. */
	__u8 inherited;
	/* The socket's events go out one by one: its batch went out at CLOSE,
	 * and what trails it (the RST of an abortive close, an error report)
	 * must follow at once; or a flush scan sent its queue because it is
	 * held in a watched state, and what comes next (a SYN retry, the end)
	 * must reach the loader before the alert it may be part of. Cleared
	 * when the socket moves again (connect() after a failed attempt). */
	__u8 one_by_one;
	__u16 pad;
	/* Entries queued. Whoever sends them claims them by swapping n to 0
	 * with cmpxchg after copying them: the socket's own programs (which
	 * the socket lock serialises) and the flush scan (which runs beside
	 * them, without that lock) never both send an entry, nor lose one. */
	__u32 n;
	struct est_figures established;
	struct batch_entry ev[BATCH_LEN];
};

/* Filters, set before load. The verifier sees them as constants, so a filter
 * that is off is pruned away, and one that is on costs a compare here and
 * nothing in user space. */
#define MAX_FILTER_PORTS 8
const volatile __u32 filter_netns = 0;
const volatile __u32 filter_pid = 0;
const volatile __u16 filter_family = 0;
const volatile __u32 filter_nports = 0;
const volatile __u16 filter_ports[MAX_FILTER_PORTS] = {};
const volatile __u32 filter_comm_set = 0;
const volatile char filter_comm[COMM_LEN] = {};
const volatile __u64 filter_cgroup = 0;
/* --container/--pod: the allowed cgroups are in the map cgroup_allow, which
 * user space keeps up to date as containers come and go. */
const volatile __u32 filter_cgroup_map = 0;
/* Wake the reader only once this much is queued; otherwise it polls on a
 * short timer. Saves a wakeup per event under load. 0 wakes every time. */
const volatile __u64 wakeup_bytes = 0;
/* Queue the events of full sockets in their storage and send them as one
 * batch (the default). 0 with --events, which prints each as it happens. */
const volatile __u32 batch_events = 1;
/* Only sockets of this namespace are queued (0: all): the queues of open
 * sockets are sent by flush_batches, which sees the namespaces the loader
 * scans. */
const volatile __u32 batch_netns = 0;

/* Events that could not be reserved in the ring buffer (a lost batch counts
 * all of its entries). */
__u64 lost_events = 0;

/* Set by the loader before each run of flush_batches: send the queues whose
 * oldest entry is older than flush_before_ns (CLOCK_MONOTONIC) and whose
 * socket is in a state the loader alerts on when held; with flush_all, every
 * queue (at exit, after the programs are detached). */
__u64 flush_before_ns = 0;
__u32 flush_all = 0;
/* Set by the loader when it stops, before it detaches: from then on a
 * socket's next event takes its queue along, so that no queue is left in a
 * socket that goes away before the last flush scan reaches it. */
__u32 batch_stopped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* What tcptrace keeps in each socket: its owner and its queued events.
 *
 * Most transitions run in softirq or timer context, where current is
 * whoever was interrupted (on loopback, the peer), so the owner is recorded
 * only where the kernel runs in the owner's syscall: connect(), listen(),
 * close()/shutdown(), and accept() (the syscall tracepoint below); send()
 * and recv() only with --owner-io, since they run for every I/O.
 *
 * It lives in the socket itself (socket local storage): a lookup is an
 * index into the socket's own cache, not a hash, and it is freed with the
 * socket, so there is nothing to evict. An LRU hash keyed by cookie cost
 * about 170 ns of each state event under connection churn. BPF_F_CLONE:
 * sk_clone_lock() copies it into each accepted socket, which is born in
 * softirq context (LISTEN -> SYN_RECV on the final ACK) and so starts
 * with its listener's owner until its own recv() or close() tells better. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sk_state);
} sk_states SEC(".maps");

/* Owners the socket storage cannot hold, by cookie: sockets that predate
 * tracing (iter/task_file reaches them through an untrusted pointer, which
 * bpf_sk_storage_get() refuses) and MPTCP subflows noted at send/recv. Off
 * the hot path: read only for a socket without storage. Timewait and
 * request sockets have none, and are found here only if a scan put their
 * cookie here: their events (a RST from TIME_WAIT) usually carry no owner.
 * LRU: no delete needed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/* The process that accept()ed a socket, by cookie, noted at accept()'s exit
 * and taken (and deleted) by the socket's next event. Per-CPU LRU lists
 * (BPF_F_NO_COMMON_LRU): an update takes no lock shared by all CPUs, which
 * under connection churn cost more than the rest of the program. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} accepted_owners SEC(".maps");

/* Listening sockets that predate tracing, by (netns, port): their accepted
 * sockets have no storage to inherit, so they take this owner. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct owner);
} listeners SEC(".maps");

/* Cookies of connections that passed the --port filter. tcp_set_state()
 * releases the local port (inet_put_port) before the tracepoint reports
 * X -> CLOSE, so the last events of a connection carry local port 0; they
 * pass if the connection passed before. Only used with a port filter. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} port_matched SEC(".maps");

/* The cgroup ids a --container/--pod filter allows (filter_cgroup_map). */
#define MAX_CGROUP_ALLOW 4096
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CGROUP_ALLOW);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_allow SEC(".maps");

/* Cookies of connections that passed a cgroup filter, noted at their
 * X -> CLOSE: a timewait socket keeps its connection's cookie but has no
 * cgroup, and its events (a RST from TIME_WAIT) pass if the connection did.
 * Only used with a cgroup filter. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_matched SEC(".maps");

struct tuple {
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
};

static __always_inline void read_tuple(const struct sock_common *skc, struct tuple *t)
{
	t->family = skc->skc_family;
	t->sport = skc->skc_num;
	t->dport = bpf_ntohs(skc->skc_dport);
	t->netns = skc->skc_net.net->ns.inum;
}

static __always_inline void read_addrs(const struct sock_common *skc, __u16 family, struct event *e)
{
	if (family == AF_INET6) {
		bpf_probe_read_kernel(e->saddr, 16, &skc->skc_v6_rcv_saddr);
		bpf_probe_read_kernel(e->daddr, 16, &skc->skc_v6_daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 4, &skc->skc_rcv_saddr);
		bpf_probe_read_kernel(e->daddr, 4, &skc->skc_daddr);
	}
}

static __always_inline struct event *reserve_event(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		__sync_fetch_and_add(&lost_events, 1);
	return e;
}

static __always_inline void submit_event(struct event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void fill_event(struct event *e, __u8 type, __u64 cookie,
				       const struct tuple *t, const struct owner *o)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = cookie;
	e->netns = t->netns;
	e->family = t->family;
	e->sport = t->sport;
	e->dport = t->dport;
	e->type = type;
	e->oldstate = 0;
	e->newstate = 0;
	e->flags = 0;
	e->reason = 0;
	e->uid = 0;
	e->cgroup = 0;
	__builtin_memset(&e->fig, 0, sizeof(e->fig));
	e->pad = 0;
	e->syscall = 0;
	e->qlen = 0;
	e->qmax = 0;
	e->drops = 0;
	e->pad2 = 0;
	if (o) {
		e->pid = o->pid;
		__builtin_memcpy(e->comm, o->comm, COMM_LEN);
	} else {
		e->pid = 0;
		__builtin_memset(e->comm, 0, COMM_LEN);
	}
}

#endif /* TCPTRACE_COMMON_H */
