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
	__u8 send_at_once;
	__u16 pad;
	/* Entries queued. Whoever sends them claims them by swapping n to 0
	 * with cmpxchg after copying them: the socket's own programs (which
	 * the socket lock serialises) and the flush scan (which runs beside
	 * them, without that lock) never both send an entry, nor lose one. */
	__u32 n;
	struct est_figures established;
	struct entry ev[QUEUE_LEN];
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
const volatile __u32 queue_events = 1;
/* Only sockets of this namespace are queued (0: all): the queues of open
 * sockets are sent by flush_queues, which sees the namespaces the loader
 * scans. */
const volatile __u32 queue_netns = 0;

/* Events that could not be reserved in the ring buffer (a lost batch counts
 * all of its entries). */
__u64 lost_events = 0;

/* Set by the loader before each run of flush_queues: send the queues whose
 * oldest entry is older than flush_before_ns (CLOCK_MONOTONIC) and whose
 * socket is in a state the loader alerts on when held; with flush_all, every
 * queue (at exit, after the programs are detached). */
__u64 flush_before_ns = 0;
__u32 flush_all = 0;
/* Set by the loader when it stops, before it detaches: from then on a
 * socket's next event takes its queue along, so that no queue is left in a
 * socket that goes away before the last flush scan reaches it. */
__u32 queues_stopped = 0;

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

/* read_tuple for a socket reached through a pointer the verifier does not
 * trust (from a file, or a probe read): each field a probe read. */
static __always_inline void read_tuple_untrusted(const struct sock *sk, struct tuple *t)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The addresses of a socket (full, request or timewait: what sock_common
 * holds). IPv4 ones fill the first 4 bytes; start_record() zeroed the rest.
 * Probe reads: also for a socket reached through an untrusted pointer. */
static __always_inline void read_addrs(const struct sock_common *skc, __u16 family, struct record *r)
{
	if (family == AF_INET6) {
		bpf_probe_read_kernel(r->saddr, 16, &skc->skc_v6_rcv_saddr);
		bpf_probe_read_kernel(r->daddr, 16, &skc->skc_v6_daddr);
	} else {
		bpf_probe_read_kernel(r->saddr, 4, &skc->skc_rcv_saddr);
		bpf_probe_read_kernel(r->daddr, 4, &skc->skc_daddr);
	}
}

/* What every record says first: whose entries they are. Everything else
 * is zeroed, for the sender to fill what it knows (ring buffer memory is
 * not cleared, and nothing of the kernel's may leak to the loader). */
static __always_inline void start_record(struct record *r, __u64 cookie, const struct tuple *t,
					 const struct owner *o, __u8 n)
{
	r->cookie = cookie;
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	r->netns = t->netns;
	r->uid = 0;
	r->dport = t->dport;
	r->family = t->family;
	r->cgroup = 0;
	__builtin_memset(&r->established, 0, sizeof(r->established));
	__builtin_memset(&r->closed, 0, sizeof(r->closed));
	r->qlen = 0;
	r->qmax = 0;
	r->drops = 0;
	r->syscall = 0;
	r->kind = RECORD_EVENTS;
	r->n = n;
	if (o) {
		r->pid = o->pid;
		__builtin_memcpy(r->comm, o->comm, COMM_LEN);
	} else {
		r->pid = 0;
		__builtin_memset(r->comm, 0, COMM_LEN);
	}
}

/* An event sent at once: a record of one entry, with room for one only. The
 * caller adds what it knows of the socket and sends it (send_record). */
static __always_inline struct record *record_of_one(const struct entry *ent, __u64 cookie,
						    const struct tuple *t, const struct owner *o)
{
	struct record *r = bpf_ringbuf_reserve(&events, RECORD_SIZE(1), 0);

	if (!r) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	start_record(r, cookie, t, o, 1);
	r->ev[0] = *ent;
	return r;
}

static __always_inline void send_record(struct record *r)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(r, flags);
}

/* The entry of an event now; flags says EVENT_F_OWNER when o is set, so
 * that the loader gives it the record's owner. */
static __always_inline struct entry entry_now(__u8 type, __u16 sport, __u16 reason, __u8 newstate,
					      __u8 flags, const struct owner *o)
{
	struct entry ent = {
		.ts_ns = bpf_ktime_get_ns(),
		.sport = sport,
		.reason = reason,
		.type = type,
		.newstate = newstate,
		.flags = flags | (o ? EVENT_F_OWNER : 0),
	};
	return ent;
}

#endif /* TCPTRACE_COMMON_H */
