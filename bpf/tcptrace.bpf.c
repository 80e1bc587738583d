// SPDX-License-Identifier: GPL-2.0
/*
 * tcptrace kernel side: tp_btf programs on the TCP tracepoints. Each program
 * reads what the tracepoint's socket says at that instant and applies the
 * load-time filters. What it saw of a full socket is queued in the socket's
 * own storage and sent as one struct batch when the socket closes (or its
 * queue fills, or a scan finds it held in a state worth an alert): an
 * ordinary connection costs one ring-buffer record per end instead of one
 * per transition. Events of sockets without storage (timewait and request
 * sockets, RSTs with no socket) go out at once as struct event. The loader
 * (tracer/) unpacks batches into the same events and correlates them.
 *
 * tp_btf rather than classic tracepoints: it hands us the real struct sock,
 * so we can take the socket cookie (refused in classic tracepoints), read
 * sk_flags/sk_err at the transition, and each program has its own recursion
 * protection instead of being skipped when another tracer runs on the CPU.
 */
#include "kernel.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Kernel TCP states (include/net/tcp_states.h). */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_FIN_WAIT2 = 5,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
	TCP_NEW_SYN_RECV = 12,
};

enum event_type {
	EVENT_STATE = 1,              /* inet_sock_set_state: oldstate -> newstate */
	EVENT_RETRANSMIT = 2,         /* tcp_retransmit_skb; newstate = socket state */
	EVENT_SYNACK_RETRANSMIT = 3,  /* tcp_retransmit_synack; tuple from the request sock */
	EVENT_RST_SENT = 4,           /* tcp_send_reset */
	EVENT_RST_RECEIVED = 5,       /* tcp_receive_reset */
	EVENT_ERROR = 6,              /* inet_sk_error_report; reason = errno */
	EVENT_DROP = 7,               /* kfree_skb of a TCP packet; reason = enum skb_drop_reason,
				       * oldstate = the segment's TCP flags (drops.h) */
	EVENT_SYSCALL_ERROR = 8,      /* connect/bind/listen/accept failed; reason = errno,
				       * syscall = enum syscall_id (syscalls.h) */
};

/* The system calls whose errors are reported (EVENT_SYSCALL_ERROR). */
enum syscall_id {
	SYSCALL_CONNECT = 1,
	SYSCALL_BIND = 2,
	SYSCALL_LISTEN = 3,
	SYSCALL_ACCEPT = 4,
};

enum event_flags {
	EVENT_F_SOCK_DEAD = 1 << 0,    /* SOCK_DEAD: orphaned by close() */
	EVENT_F_SOCK_DONE = 1 << 1,    /* SOCK_DONE: the peer's FIN was processed */
	EVENT_F_NO_SOCKET = 1 << 2,    /* RST sent with no socket; tuple from the packet */
	EVENT_F_REASON = 1 << 3,       /* reason holds an enum sk_rst_reason value */
	EVENT_F_OWNER_SEEN = 1 << 4,   /* pid/comm were taken from current, in the owner's syscall */
	EVENT_F_OWNER = 1 << 5,        /* batch entries: the event had an owner (the batch's) */
	/* At X -> CLOSE: no file ever held the socket and it was not orphaned:
	 * an accepted connection still in its listener's accept queue. */
	EVENT_F_NO_FILE = 1 << 6,
};

#define COMM_LEN 16

/* What a socket's ESTABLISHED transition tells: its first RTT, the
 * SYN+ACK retries an accepted socket starts with, and both initial
 * sequence numbers (snd_una and rcv_nxt are one past them then). Kept in
 * each socket's storage until its batch goes, so kept small. */
struct est_figures {
	__u64 bytes_acked;    /* bytes sent and acknowledged by the peer */
	__u64 bytes_received;
	__u64 jiffies;        /* bpf_jiffies64(): the loader learns HZ from it */
	__u32 srtt_us;        /* smoothed RTT in 1/8 us, as the kernel keeps it */
	__u32 total_retrans;  /* segments retransmitted */
	__u32 snd_una;
	__u32 rcv_nxt;
};

/* What a socket's end tells (and struct event carries at ESTABLISHED and
 * CLOSE): the figures above, the FIN's sequence number (write_seq is one
 * past it), what tcp_info would say, and the socket's own settings. */
struct tcp_figures {
	struct est_figures base;
	__u32 write_seq;
	__u32 user_timeout;   /* TCP_USER_TIMEOUT (ms), 0: none */
	__u32 cwnd;
	__u32 ssthresh;
	__u32 min_rtt_us;
	__u32 delivered;      /* segments delivered */
	__u32 lost;           /* segments lost now (lost_out) */
	__u32 reordering;
	__u32 snd_mss;
	__u32 rcv_mss;
	__u32 dsack_dups;     /* retransmissions the peer had already: spurious */
	/* Chrono statistics in jiffies, the running one included. */
	__u32 busy;
	__u32 rwnd_limited;
	__u32 sndbuf_limited;
	/* The spell limited by the peer's receive window under way, if one
	 * is (jiffies); 0 if none. */
	__u32 stalled_for;
	__u8 syn_retries;     /* TCP_SYNCNT, 0: the sysctl */
	__u8 probes;          /* zero-window probes unanswered */
	__u8 pad[2];
};

struct event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;     /* socket cookie; 0 when there is no socket */
	__u8 saddr[16];   /* local address (IPv4 in the first 4 bytes) */
	__u8 daddr[16];   /* remote address */
	__u32 netns;      /* network namespace inode */
	__u32 pid;        /* owning process (tgid); 0 when not known */
	__u32 uid;        /* socket owner uid (sk_uid) */
	__u16 sport;      /* local port, host order */
	__u16 dport;      /* remote port, host order */
	__u16 family;     /* AF_INET or AF_INET6 */
	__u16 reason;     /* state: sk_err; rst_sent: sk_rst_reason; error: errno */
	__u8 type;        /* enum event_type */
	__u8 oldstate;
	__u8 newstate;    /* for non-state events: the socket's state at the time */
	__u8 flags;       /* enum event_flags */
	char comm[COMM_LEN];
	__u64 cgroup;     /* cgroup v2 id of the socket (its creator's cgroup) */
	/* From struct tcp_sock, at ESTABLISHED and CLOSE of full sockets. */
	struct tcp_figures fig;
	__u16 syscall;        /* EVENT_SYSCALL_ERROR: enum syscall_id */
	__u16 pad;
	/* A listener's accept queue, on events that concern one (a SYN+ACK
	 * retry, a drop at a listener, a failed accept()): length, limit and
	 * the listener's drop count. */
	__u32 qlen;
	__u32 qmax;
	__u32 drops;
	__u32 pad2;
};

/* One socket, as the iter/tcp program reports it. */
struct sock_info {
	__u64 cookie;
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 bytes_acked;
	__u64 bytes_received;
	__u64 cgroup;   /* full sockets' cgroup v2 id; 0 for the others */
	__u32 netns;
	__u32 uid;
	__u32 srtt_us;
	__u32 total_retrans;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 state;     /* TIME_WAIT for timewait sockets, NEW_SYN_RECV for requests */
	__u8 substate;  /* timewait sockets: TIME_WAIT, or FIN_WAIT2 for an orphan */
	/* Listeners: accept queue length and limit, and drops (as struct event). */
	__u32 qlen;
	__u32 qmax;
	__u32 drops;
	__u32 pad;
};

/* One socket file of a process, as the iter/task_file program reports it. */
struct owner_info {
	__u64 cookie;
	__u32 pid;
	char comm[COMM_LEN];
};

/* One queued event of a socket: what differs from one event to the next.
 * The rest (addresses, owner, cgroup, uid) is the socket's and is read when
 * the batch is sent. */
struct batch_entry {
	__u64 ts_ns;
	__u16 sport;      /* local port then: 0 before connect() picks it and after CLOSE releases it */
	__u16 reason;     /* as struct event */
	__u8 type;
	__u8 oldstate;
	__u8 newstate;
	__u8 flags;
};

/* Five transitions make an ordinary connection's end (7->2, 2->1, 1->4,
 * 4->5, 5->7 for a client; 10->3, 3->1, 1->8, 8->9, 9->7 for a server); the
 * rest holds RSTs, errors, retransmissions. Each entry costs 16 bytes of
 * every traced socket's storage. A power of two: an index masked with
 * BATCH_MASK is one every verifier (Linux 6.1's too) sees in bounds. */
#define BATCH_LEN 8
#define BATCH_MASK (BATCH_LEN - 1)

/* An entry's index, masked where the verifier sees it: the empty asm hides
 * what clang knows of i, or it would drop a mask it proves useless and the
 * verifier (Linux 6.1's) would lose the bound. */
static __always_inline __u32 entry_index(__u32 i)
{
	asm volatile("" : "+r"(i));
	return i & BATCH_MASK;
}



/* The queued events of one socket, as the ring buffer (or a flush scan)
 * delivers them. established: the figures at the ESTABLISHED entry; closed:
 * at the CLOSE entry, which is always last. */
struct batch {
	__u64 cookie;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u32 pid;
	__u32 uid;
	__u16 dport;
	__u16 family;
	char comm[COMM_LEN];
	__u64 cgroup;
	struct est_figures established;
	struct tcp_figures closed;
	__u32 n;
	__u32 magic;      /* BATCH_MAGIC: tells a batch from a struct event */
	struct batch_entry ev[BATCH_LEN];
};

#define BATCH_MAGIC 0x74637062 /* "tcpb" */
/* A flush scan's notice of a socket stalled on the peer's receive window:
 * a struct batch with no entries, its figures in closed. */
#define STALL_MAGIC 0x74637073 /* "tcps" */

/* enum tcp_chrono: the spell running in tp->chrono_type. */
#define TCP_CHRONO_RWND_LIMITED 2

/* Make struct event and the enums reachable from BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum event_flags *unused_event_flags __attribute__((unused));
const struct sock_info *unused_sock_info __attribute__((unused));
const struct owner_info *unused_owner_info __attribute__((unused));
const struct batch *unused_batch __attribute__((unused));
const enum syscall_id *unused_syscall_id __attribute__((unused));
const enum retransmit_kind *unused_retransmit_kind __attribute__((unused));

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

static __always_inline bool tuple_filtered(const struct tuple *t, __u64 cookie)
{
	if (t->family != AF_INET && t->family != AF_INET6)
		return true;
	if (filter_netns && t->netns != filter_netns)
		return true;
	if (filter_family && t->family != filter_family)
		return true;
	if (filter_nports) {
		for (int i = 0; i < MAX_FILTER_PORTS; i++) {
			if (i >= filter_nports)
				break;
			if (t->sport == filter_ports[i] || t->dport == filter_ports[i]) {
				if (cookie) {
					__u8 one = 1;
					bpf_map_update_elem(&port_matched, &cookie, &one, BPF_ANY);
				}
				return false;
			}
		}
		/* Both ports known and neither matches: not ours. Only an event
		 * with a port missing (SYN_SENT before connect() picks the local
		 * port, X -> CLOSE after it is released) may belong to a
		 * connection that matched earlier: only then ask the map, so
		 * that filtered-out traffic costs no lookup. */
		if (t->sport && t->dport)
			return true;
		return !cookie || !bpf_map_lookup_elem(&port_matched, &cookie);
	}
	return false;
}

/* The cgroup v2 id of a full socket: the cgroup of the process that created
 * it (an accepted socket inherits its listener's). */
static __always_inline __u64 sk_cgroup(const struct sock *sk)
{
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;

	return cg ? cg->kn->id : 0;
}

/* The packets a socket dropped: sk_drops, or since Linux 6.18 per-NUMA
 * counters for the sockets that have them (sk_drops_read()). */
static __always_inline __u32 sk_drops_of(const struct sock *sk)
{
	__u32 n = BPF_CORE_READ(sk, sk_drops.counter);

	if (bpf_core_field_exists(sk->sk_drop_counters)) {
		struct numa_drop_counters *dc = BPF_CORE_READ(sk, sk_drop_counters);
		if (dc)
			n += BPF_CORE_READ(dc, drops0.counter) + BPF_CORE_READ(dc, drops1.counter);
	}
	return n;
}

/* A listener's accept queue, as the events that concern one carry it. */
static __always_inline void read_listener(const struct sock *sk, __u32 *qlen, __u32 *qmax, __u32 *drops)
{
	*qlen = BPF_CORE_READ(sk, sk_ack_backlog);
	*qmax = BPF_CORE_READ(sk, sk_max_ack_backlog);
	*drops = sk_drops_of(sk);
}

static __always_inline bool cgroup_filter_on(void)
{
	return filter_cgroup || filter_cgroup_map;
}

/* cgroup 0: no full socket (timewait or request socket, or a RST with no
 * socket), which passes only as part of a connection that passed. */
static __always_inline bool cgroup_filtered(__u64 cgroup, __u64 cookie)
{
	if (!cgroup_filter_on())
		return false;
	if (!cgroup)
		return !cookie || !bpf_map_lookup_elem(&cgroup_matched, &cookie);
	if (filter_cgroup)
		return cgroup != filter_cgroup;
	return !bpf_map_lookup_elem(&cgroup_allow, &cgroup);
}

/* The figures of ESTABLISHED. */
static __always_inline void read_est_figures(const struct tcp_sock *tp, struct est_figures *f)
{
	f->bytes_acked = tp->bytes_acked;
	f->bytes_received = tp->bytes_received;
	f->jiffies = bpf_jiffies64();
	f->srtt_us = tp->srtt_us;
	f->total_retrans = tp->total_retrans;
	f->snd_una = tp->snd_una;
	f->rcv_nxt = tp->rcv_nxt;
}

/* The figures of a socket's end: read once per connection, never per
 * packet. The chrono running now is added as tcp_get_info() does. */
static __always_inline void read_figures(const struct sock *sk, struct tcp_figures *f)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return;
	read_est_figures(tp, &f->base);
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)tp;
	f->write_seq = tp->write_seq;
	/* The socket's own settings, which override the namespace's sysctls
	 * in the kernel's timers: explanations quote what was in force. */
	f->syn_retries = icsk->icsk_syn_retries;
	f->user_timeout = icsk->icsk_user_timeout;
	f->probes = icsk->icsk_probes_out;
	f->rcv_mss = icsk->icsk_ack.rcv_mss;
	f->cwnd = tp->snd_cwnd;
	f->ssthresh = tp->snd_ssthresh;
	f->min_rtt_us = tp->rtt_min.s[0].v;
	f->delivered = tp->delivered;
	f->lost = tp->lost_out;
	f->reordering = tp->reordering;
	f->snd_mss = tp->mss_cache;
	f->dsack_dups = tp->dsack_dups;
	__u32 stat[3] = { tp->chrono_stat[0], tp->chrono_stat[1], tp->chrono_stat[2] };
	__u32 running = BPF_CORE_READ_BITFIELD_PROBED(tp, chrono_type);
	if (running >= 1 && running <= 3)
		stat[running - 1] += (__u32)f->base.jiffies - tp->chrono_start;
	f->busy = stat[0];
	f->rwnd_limited = stat[1];
	f->sndbuf_limited = stat[2];
	f->stalled_for = running == TCP_CHRONO_RWND_LIMITED ? (__u32)f->base.jiffies - tp->chrono_start : 0;
}

static __always_inline bool owner_filtered(const struct owner *o)
{
	if (!filter_pid && !filter_comm_set)
		return false;
	if (!o)
		return true; /* the owner is unknown: it cannot be shown to match */
	if (filter_pid && o->pid != filter_pid)
		return true;
	if (filter_comm_set) {
		for (int i = 0; i < COMM_LEN; i++) {
			if (o->comm[i] != filter_comm[i])
				return true;
			if (!o->comm[i])
				break;
		}
	}
	return false;
}

/* The storage of a full socket (NULL for timewait and request sockets,
 * or when the kernel has no memory for it), created if asked. */
static __always_inline struct sk_state *sk_state_of(const struct sock *sk, __u64 cookie, bool create)
{
	struct sk_state *st = bpf_sk_storage_get(&sk_states, (struct sock *)sk, 0,
						 create ? BPF_SK_STORAGE_GET_F_CREATE : 0);

	if (st && st->cookie != cookie) {
		/* New, or the clone's copy of its listener's storage. */
		st->inherited = st->owner.pid != 0;
		st->cookie = cookie;
		st->one_by_one = 0;
		st->n = 0;
	}
	return st;
}

/* The owner of a socket: its storage, else what a scan, the accept hook or
 * an MPTCP note left by cookie. */
static __always_inline struct owner *resolve_owner(struct sk_state *st, __u64 cookie)
{
	if (st && st->owner.pid) {
		if (st->inherited) {
			struct owner *accepted = bpf_map_lookup_elem(&accepted_owners, &cookie);
			if (accepted) {
				st->owner = *accepted;
				st->inherited = 0;
				bpf_map_delete_elem(&accepted_owners, &cookie);
			}
		}
		return &st->owner;
	}
	return bpf_map_lookup_elem(&owners, &cookie);
}

static __always_inline void owner_from_current(struct owner *o)
{
	o->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
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


/* Fill what a batch says of its socket, read when it is sent: none of it
 * changes over the socket's life but the local port, which each entry
 * keeps. */
static __always_inline void fill_batch(struct batch *b, const struct sock *sk, struct sk_state *st, __u32 n)
{
	struct tuple t;

	read_tuple(&sk->__sk_common, &t);
	b->magic = BATCH_MAGIC;
	b->n = n;
	b->cookie = st->cookie;
	b->netns = t.netns;
	b->family = t.family;
	b->dport = t.dport;
	if (t.family == AF_INET6) {
		bpf_probe_read_kernel(b->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(b->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		__builtin_memset(b->saddr, 0, 16);
		__builtin_memset(b->daddr, 0, 16);
		bpf_probe_read_kernel(b->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_probe_read_kernel(b->daddr, 4, &sk->__sk_common.skc_daddr);
	}
	b->uid = sk->sk_uid.val;
	b->cgroup = sk_cgroup(sk);
	struct owner *o = resolve_owner(st, st->cookie);
	if (o) {
		b->pid = o->pid;
		__builtin_memcpy(b->comm, o->comm, COMM_LEN);
	} else {
		b->pid = 0;
		__builtin_memset(b->comm, 0, COMM_LEN);
	}
	b->established = st->established;
	__builtin_memset(&b->closed, 0, sizeof(b->closed));
	/* A CLOSE entry is always the last one: its figures are the socket's now. */
	if (n > 0 && n <= BATCH_LEN) {
		struct batch_entry *last = &b->ev[entry_index(n - 1)];
		if (last->type == EVENT_STATE && last->newstate == TCP_CLOSE)
			read_figures(sk, &b->closed);
	}
}

/* Queue ent for a full socket, or send the queue with it when send is set
 * (or when the queue is full); with no ent, send what is queued. Returns
 * false when it could do neither, and the caller sends the event alone. */
static __always_inline bool queue_event(const struct sock *sk, struct sk_state *st,
					const struct batch_entry *ent, bool send)
{
	/* Each try fails only when a flush scan claimed the queue meanwhile;
	 * the queue is then empty, and the next try appends to it. */
	for (int try = 0; try < 3; try++) {
		__u32 n = st->n;
		if (n > BATCH_LEN)
			return false; /* cannot happen; tells the verifier n is bounded */
		if (!ent && !n)
			return true;
		if (ent && n < BATCH_LEN && !send) {
			st->ev[entry_index(n)] = *ent;
			if (__sync_val_compare_and_swap(&st->n, n, n + 1) == n)
				return true;
			continue;
		}
		struct batch *b = bpf_ringbuf_reserve(&events, sizeof(*b), 0);
		if (!b) {
			/* The ring is full: the queue is lost with the event. */
			if (__sync_val_compare_and_swap(&st->n, n, 0) == n)
				__sync_fetch_and_add(&lost_events, n + (ent ? 1 : 0));
			return true;
		}
		__builtin_memcpy(b->ev, st->ev, sizeof(b->ev));
		bool with_ent = ent && n < BATCH_LEN;
		if (with_ent)
			b->ev[entry_index(n)] = *ent;
		if (__sync_val_compare_and_swap(&st->n, n, 0) != n) {
			bpf_ringbuf_discard(b, BPF_RB_NO_WAKEUP);
			continue;
		}
		fill_batch(b, sk, st, with_ent ? n + 1 : n);
		submit_event((struct event *)b);
		if (with_ent || !ent)
			return true;
		/* It was full: ent starts the next queue, or goes with it. */
	}
	return false;
}

/* The transitions that only happen inside the owner's own system call. */
static __always_inline bool in_owner_syscall(int oldstate, int newstate)
{
	return (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) ||     /* connect() */
	       (oldstate == TCP_CLOSE && newstate == TCP_LISTEN) ||       /* listen() */
	       (oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) || /* close()/shutdown() first */
	       (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK);  /* close()/shutdown() second */
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	/* The tracepoint also fires for other inet protocols (SCTP, MPTCP). */
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;

	struct tuple t;
	read_tuple(&sk->__sk_common, &t);
	/* At X -> CLOSE, tcp_set_state() has released the local port
	 * (inet_put_port() zeroes skc_num) before the tracepoint fires; the
	 * socket still knows the port it had. */
	if (!t.sport && newstate == TCP_CLOSE)
		t.sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	/* Before Linux 6.15, inet_csk_clone_lock() reports LISTEN -> SYN_RECV
	 * before it sets the new socket's addresses, while the socket still
	 * carries a copy of its listener's cookie. Nothing in that event is the
	 * connection's own: skip it, SYN_RECV -> ESTABLISHED follows at once. */
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV && t.dport == 0)
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	if (tuple_filtered(&t, cookie))
		return 0;
	/* Every event of a full socket carries its cgroup, also a connection
	 * older than tcptrace whose first transition is not its first. Read
	 * here for a filter; a queued event's batch reads it when sent. */
	__u64 cgroup = cgroup_filter_on() ? sk_cgroup(sk) : 0;
	if (cgroup_filtered(cgroup, cookie))
		return 0;
	if (cgroup_filter_on() && newstate == TCP_CLOSE) {
		__u8 one = 1;
		bpf_map_update_elem(&cgroup_matched, &cookie, &one, BPF_ANY);
	}

	bool listener = (oldstate == TCP_LISTEN && newstate != TCP_SYN_RECV) || newstate == TCP_LISTEN;
	bool owner_call = in_owner_syscall(oldstate, newstate);
	struct sk_state *st = sk_state_of(sk, cookie, owner_call || batch_events);
	struct owner cur = {};
	struct owner *o;
	__u8 flags = 0;

	if (st && oldstate == TCP_CLOSE)
		st->one_by_one = 0; /* moving again: connect() after a failed attempt */
	if (owner_call) {
		o = st ? &st->owner : &cur; /* no memory for the storage: this event still has it */
		owner_from_current(o);
		if (st)
			st->inherited = 0;
		flags |= EVENT_F_OWNER_SEEN;
	} else {
		o = resolve_owner(st, cookie);
		if (!o && (newstate == TCP_SYN_RECV || oldstate == TCP_SYN_RECV)) {
			struct listener_key lk = { .netns = t.netns, .port = t.sport };
			o = bpf_map_lookup_elem(&listeners, &lk);
		}
	}
	if (owner_filtered(o)) {
		/* Not ours now; what was queued while it was still goes out. */
		if (st && newstate == TCP_CLOSE)
			queue_event(sk, st, 0, true);
		return 0;
	}

	/* At X -> CLOSE these two bits tell real TIME_WAIT (the peer's FIN was
	 * processed: SOCK_DONE) from an orphan handed to a timewait socket in
	 * FIN_WAIT2 (SOCK_DEAD alone). sk_shutdown cannot: close() sets it. */
	unsigned long skflags = sk->__sk_common.skc_flags;
	if (skflags & (1UL << SOCK_DEAD))
		flags |= EVENT_F_SOCK_DEAD;
	if (skflags & (1UL << SOCK_DONE))
		flags |= EVENT_F_SOCK_DONE;
	/* inet_child_forget() resets the connections a closing listener still
	 * holds in its accept queue: tcp_disconnect() moves each to CLOSE
	 * before sock_orphan(), and no file ever held it. */
	if (newstate == TCP_CLOSE && !(skflags & (1UL << SOCK_DEAD)) && !sk->sk_socket && !listener)
		flags |= EVENT_F_NO_FILE;

	/* Listeners go out at once: the loader counts a listener's SYN+ACK
	 * retransmissions on its record and knows servers by their listening
	 * ports, both while it listens. */
	if (batch_events && st && !st->one_by_one && !listener && (!batch_netns || t.netns == batch_netns)) {
		struct batch_entry ent = {
			.ts_ns = bpf_ktime_get_ns(),
			.sport = t.sport,
			/* tcp_reset() and tcp_write_err() set sk_err before
			 * tcp_done() moves the socket to CLOSE. */
			.reason = sk->sk_err,
			.type = EVENT_STATE,
			.oldstate = oldstate,
			.newstate = newstate,
			.flags = flags | (o ? EVENT_F_OWNER : 0),
		};
		bool send = newstate == TCP_CLOSE || batch_stopped;
		if (newstate == TCP_ESTABLISHED) {
			struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
			if (tp)
				read_est_figures(tp, &st->established);
			/* An accepted socket whose SYN+ACK was retransmitted
			 * (tcp_create_openreq_child() starts total_retrans at the
			 * request's count): the loader holds those retries by
			 * 4-tuple until it sees this socket, and would alert on
			 * them as a handshake left half-made. Send it now. */
			send = send || (oldstate == TCP_SYN_RECV && st->established.total_retrans);
		}
		if (queue_event(sk, st, &ent, send)) {
			if (newstate == TCP_CLOSE)
				st->one_by_one = 1;
			return 0;
		}
	}

	struct event *e = reserve_event();
	if (!e)
		return 0;
	fill_event(e, EVENT_STATE, cookie, &t, o);
	read_addrs(&sk->__sk_common, t.family, e);
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->flags = flags;
	e->reason = sk->sk_err;
	e->uid = sk->sk_uid.val;
	e->cgroup = cgroup ? cgroup : sk_cgroup(sk);
	/* The figures are used at the handshake (its RTT) and at the end. */
	if (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE)
		read_figures(sk, &e->fig);
	submit_event(e);
	return 0;
}

/* One event about a full socket: the common path of the non-state programs. */
static __always_inline int emit_sock_event(const struct sock *sk, __u8 type, __u16 reason, __u8 flags)
{
	struct tuple t;
	read_tuple(&sk->__sk_common, &t);
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	if (tuple_filtered(&t, cookie))
		return 0;
	/* Timewait and request sockets are only a sock_common: no cgroup. */
	__u8 state = sk->__sk_common.skc_state;
	__u64 cgroup = 0;
	if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
		cgroup = sk_cgroup(sk);
	if (cgroup_filtered(cgroup, cookie))
		return 0;

	/* Timewait and request sockets have no storage: resolve_owner() falls
	 * back to the cookie map, and to no owner. */
	struct sk_state *st = sk_state_of(sk, cookie, batch_events);
	struct owner *o = resolve_owner(st, cookie);
	if (owner_filtered(o))
		return 0;

	if (batch_events && st && !st->one_by_one && (!batch_netns || t.netns == batch_netns)) {
		struct batch_entry ent = {
			.ts_ns = bpf_ktime_get_ns(),
			.sport = t.sport,
			.reason = reason,
			.type = type,
			.newstate = state,
			.flags = flags | (o ? EVENT_F_OWNER : 0),
		};
		if (queue_event(sk, st, &ent, batch_stopped))
			return 0;
	}

	struct event *e = reserve_event();
	if (!e)
		return 0;
	fill_event(e, type, cookie, &t, o);
	read_addrs(&sk->__sk_common, t.family, e);
	e->newstate = state;
	e->cgroup = cgroup;
	e->flags = flags;
	e->reason = reason;
	submit_event(e);
	return 0;
}

/* Kinds of retransmission (the reason of an EVENT_RETRANSMIT; the RTO
 * backoff count in its high byte), from the socket's state as the
 * tracepoint fires: a retransmission timeout puts the socket in
 * TCP_CA_Loss first (tcp_enter_loss), fast recovery in TCP_CA_Recovery; a
 * tail-loss probe runs from the loss-probe timer (icsk_pending). */
enum retransmit_kind {
	RETRANS_OTHER = 0,
	RETRANS_RTO = 1,
	RETRANS_FAST = 2,
	RETRANS_TLP = 3,
};

#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4
#define ICSK_TIME_LOSS_PROBE 5

static __always_inline __u16 retransmit_kind(const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return RETRANS_OTHER;
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)tp;
	__u8 ca = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	if (icsk->icsk_pending == ICSK_TIME_LOSS_PROBE)
		return RETRANS_TLP;
	if (ca == TCP_CA_LOSS)
		return RETRANS_RTO | (__u16)icsk->icsk_backoff << 8;
	if (ca == TCP_CA_RECOVERY)
		return RETRANS_FAST;
	return RETRANS_OTHER;
}

/* Attempts that sent nothing (Linux >= 6.17 passes their error: -EAGAIN
 * when the previous copy is still queued below TCP, -EBUSY, -ENOMEM). */
__u64 retransmit_failed = 0;

/* Linux >= 6.17: the tracepoint also fires for a retransmission that
 * failed and sent nothing; only those sent are counted as retransmissions.
 * The loader picks this program or the next from the prototype. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit_err, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (err) {
		__sync_fetch_and_add(&retransmit_failed, 1);
		return 0;
	}
	/* In SYN_SENT the retransmitted segment is the SYN itself. */
	return emit_sock_event(sk, EVENT_RETRANSMIT, retransmit_kind(sk), 0);
}

/* Older kernels: only retransmissions that were sent fire it. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit, const struct sock *sk)
{
	return emit_sock_event(sk, EVENT_RETRANSMIT, retransmit_kind(sk), 0);
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	/* sk is the listener; the connection so far lives only in the request
	 * socket (NEW_SYN_RECV), which has no full-socket transitions. The loader
	 * matches it to the accepted socket by its 4-tuple. */
	struct tuple t;
	read_tuple(&req->__req_common, &t);
	if (tuple_filtered(&t, 0))
		return 0;

	__u64 cgroup = sk_cgroup(sk);
	if (cgroup_filtered(cgroup, 0))
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	struct owner *o = resolve_owner(sk_state_of(sk, cookie, false), cookie);
	if (!o) {
		struct listener_key lk = { .netns = t.netns, .port = t.sport };
		o = bpf_map_lookup_elem(&listeners, &lk);
	}
	if (owner_filtered(o))
		return 0;

	struct event *e = reserve_event();
	if (!e)
		return 0;
	fill_event(e, EVENT_SYNACK_RETRANSMIT, cookie, &t, o);
	e->cgroup = cgroup;
	/* A full accept queue drops the final ACK (tcp_check_req() ->
	 * syn_recv_sock fails) and the SYN+ACK is sent again: the listener's
	 * queue now says whether that is why. */
	read_listener(sk, &e->qlen, &e->qmax, &e->drops);
	read_addrs(&req->__req_common, t.family, e);
	e->newstate = TCP_SYN_RECV;
	submit_event(e);
	return 0;
}

/* A RST sent with no socket (nothing listening: SK_RST_REASON_NO_SOCKET) has
 * only the packet it answers; the local end is that packet's destination. */
static __always_inline int rst_without_socket(const struct sk_buff *skb, __u32 netns, __u16 reason, __u8 flags)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th = skb->transport_header;
	struct tuple t = {};
	__u8 vhl = 0;
	__u16 ports[2] = {};

	if (bpf_probe_read_kernel(&vhl, 1, head + nh))
		return 0;
	if (vhl >> 4 == 6)
		t.family = AF_INET6;
	else if (vhl >> 4 == 4)
		t.family = AF_INET;
	else
		return 0;
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + th))
		return 0;
	t.sport = bpf_ntohs(ports[1]);
	t.dport = bpf_ntohs(ports[0]);
	/* With no socket at all, the namespace is the receiving device's. */
	t.netns = netns ? netns : skb->dev->nd_net.net->ns.inum;
	if (tuple_filtered(&t, 0) || owner_filtered(0) || cgroup_filtered(0, 0))
		return 0;

	struct event *e = reserve_event();
	if (!e)
		return 0;
	fill_event(e, EVENT_RST_SENT, 0, &t, 0);
	if (t.family == AF_INET6) {
		bpf_probe_read_kernel(e->daddr, 16, head + nh + 8);
		bpf_probe_read_kernel(e->saddr, 16, head + nh + 24);
	} else {
		bpf_probe_read_kernel(e->daddr, 4, head + nh + 12);
		bpf_probe_read_kernel(e->saddr, 4, head + nh + 16);
	}
	e->flags = flags | EVENT_F_NO_SOCKET;
	e->reason = reason;
	submit_event(e);
	return 0;
}

static __always_inline int rst_sent(const struct sock *sk, const struct sk_buff *skb,
				    __u16 reason, __u8 flags)
{
	if (!sk)
		return skb ? rst_without_socket(skb, 0, reason, flags) : 0;
	/* A listener answering a segment that is not a SYN (TCP_FLAGS) speaks
	 * for a connection that does not exist, like the no-socket case: the
	 * packet says which one (a half-open peer still sending to us). */
	if (sk->__sk_common.skc_state == TCP_LISTEN && skb)
		return rst_without_socket(skb, sk->__sk_common.skc_net.net->ns.inum, reason, flags);

	/* sk may be a full, request or timewait socket here: emit_sock_event
	 * reads only the sock_common part they share. */
	return emit_sock_event(sk, EVENT_RST_SENT, reason, flags);
}

/* Linux >= 6.10: tcp_send_reset carries enum sk_rst_reason. The loader
 * picks this program or the next one from the tracepoint's BTF prototype. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	return rst_sent(sk, skb, reason, EVENT_F_REASON);
}

/* Older kernels: no reason argument. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset_noreason, const struct sock *sk, const struct sk_buff *skb)
{
	return rst_sent(sk, skb, 0, 0);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, const struct sock *sk)
{
	return emit_sock_event(sk, EVENT_RST_RECEIVED, 0, 0);
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report, const struct sock *sk)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* sock_error() clears sk_err when the application reads it, and a
	 * report may come after that: nothing left to tell. */
	int err = sk->sk_err;
	if (!err)
		return 0;
	return emit_sock_event(sk, EVENT_ERROR, err, 0);
}

/* The TCP socket behind a socket file is the socket itself, or for MPTCP
 * (the default of Go >= 1.24 listeners) its first subflow: that is what
 * carries the TCP connection and what the TCP tracepoints report. Both are
 * reached by pointers the verifier does not trust (socket->sk from a file,
 * msk->first from a probe read), which bpf_get_socket_cookie() refuses, so
 * the cookie is read as the kernel keeps it: it exists if a tracepoint or
 * iter/tcp has seen the socket (the loader scans sockets before owners).
 * Returns the cookie, 0 if none. */
static __always_inline __u64 tcp_behind_untrusted(struct sock *sk, __u16 proto, struct tuple *t)
{
	if (proto != IPPROTO_MPTCP || !bpf_core_type_exists(struct mptcp_sock))
		return 0;
	struct sock *first = BPF_CORE_READ((struct mptcp_sock *)sk, first);
	if (!first)
		return 0;
	t->family = BPF_CORE_READ(first, __sk_common.skc_family);
	t->sport = BPF_CORE_READ(first, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(first, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(first, __sk_common.skc_net.net, ns.inum);
	return BPF_CORE_READ(first, __sk_common.skc_cookie.counter);
}

static __always_inline __u64 tcp_behind(struct sock *sk, struct tuple *t)
{
	__u16 proto = sk->sk_protocol;

	if (proto == IPPROTO_TCP) {
		read_tuple(&sk->__sk_common, t);
		return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	}
	return tcp_behind_untrusted(sk, proto, t);
}

/* send()/recv() run in the caller's context: the best moment to learn which
 * process really uses a socket (a prefork server's worker rather than the
 * master that listened). Nothing is emitted; the owner is updated when the
 * user changed. Linux >= 6.3; the loader skips them where missing. */
static __always_inline int note_owner(struct sock *sk)
{
	struct tuple t = {};
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (sk->sk_protocol == IPPROTO_TCP) {
		read_tuple(&sk->__sk_common, &t);
		if (tuple_filtered(&t, 0))
			return 0;
		struct sk_state *st = sk_state_of(sk, bpf_get_socket_cookie(sk), true);
		if (st && (st->owner.pid != pid || st->inherited)) {
			owner_from_current(&st->owner);
			st->inherited = 0;
		}
		return 0;
	}

	/* MPTCP: the subflow is only reached by a probe read, which the
	 * socket storage helpers refuse: note it by cookie. */
	__u64 cookie = tcp_behind(sk, &t);
	if (!cookie || tuple_filtered(&t, 0))
		return 0;
	struct owner *o = bpf_map_lookup_elem(&owners, &cookie);
	if (o && o->pid == pid)
		return 0;
	struct owner cur = {};
	owner_from_current(&cur);
	bpf_map_update_elem(&owners, &cookie, &cur, BPF_ANY);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(handle_send_length, struct sock *sk)
{
	return note_owner(sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(handle_recv_length, struct sock *sk)
{
	return note_owner(sk);
}

/* iter/tcp walks the TCP hash tables of the reader's network namespace:
 * listeners, full sockets, request sockets and timewait sockets, the last
 * two invisible to inet_sock_set_state. The loader runs it at start (for
 * connections that predate tracing) and periodically (timewait sockets). */
SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;

	struct tuple t;
	read_tuple(skc, &t);
	__u64 cookie = bpf_get_socket_cookie(skc);
	if (tuple_filtered(&t, cookie))
		return 0;
	/* The cgroup filters (--cgroup, --container, --pod) apply to what scans
	 * find as to events: a full socket by its cgroup, a timewait socket if
	 * its connection passed. Request sockets pass: the scans only look for
	 * those of handshakes whose SYN+ACK retries passed the filter. */
	if (cgroup_filter_on() && skc->skc_state != TCP_NEW_SYN_RECV) {
		struct tcp_sock *full = bpf_skc_to_tcp_sock(skc);
		if (cgroup_filtered(full ? sk_cgroup((const struct sock *)full) : 0, cookie))
			return 0;
	}

	struct sock_info info = {};
	info.cookie = cookie;
	info.netns = t.netns;
	info.family = t.family;
	info.sport = t.sport;
	info.dport = t.dport;
	info.uid = ctx->uid;
	if (t.family == AF_INET6) {
		bpf_probe_read_kernel(info.saddr, 16, &skc->skc_v6_rcv_saddr);
		bpf_probe_read_kernel(info.daddr, 16, &skc->skc_v6_daddr);
	} else {
		bpf_probe_read_kernel(info.saddr, 4, &skc->skc_rcv_saddr);
		bpf_probe_read_kernel(info.daddr, 4, &skc->skc_daddr);
	}
	info.state = skc->skc_state;
	if (info.state == TCP_LISTEN) {
		struct tcp_sock *ltp = bpf_skc_to_tcp_sock(skc);
		if (ltp)
			read_listener((const struct sock *)ltp, &info.qlen, &info.qmax, &info.drops);
	}
	if (info.state == TCP_TIME_WAIT) {
		struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			info.substate = tw->tw_sk.tw_substate;
	} else {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
		if (tp) {
			info.cgroup = sk_cgroup((const struct sock *)tp);
			info.bytes_acked = tp->bytes_acked;
			info.bytes_received = tp->bytes_received;
			info.srtt_us = tp->srtt_us;
			info.total_retrans = tp->total_retrans;
		}
	}
	bpf_seq_write(ctx->meta->seq, &info, sizeof(info));
	return 0;
}

/* iter/task_file walks every open file of every process: for a socket
 * that predates tracing, the only way to learn its owner. It also seeds the
 * owner maps, so the --pid/--comm filters work for those sockets too. */
SEC("iter/task_file")
int dump_owners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	/* Threads share their process's files: report them once. */
	if (task->pid != task->tgid)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;

	struct tuple t = {};
	__u64 cookie = tcp_behind(sk, &t);
	if (!cookie || tuple_filtered(&t, cookie))
		return 0;

	struct owner o = {};
	o.pid = task->tgid;
	bpf_probe_read_kernel_str(o.comm, sizeof(o.comm), task->comm);
	bpf_map_update_elem(&owners, &cookie, &o, BPF_NOEXIST);
	if (BPF_CORE_READ(sock, sk, __sk_common.skc_state) == TCP_LISTEN) {
		struct listener_key lk = { .netns = t.netns, .port = t.sport };
		bpf_map_update_elem(&listeners, &lk, &o, BPF_NOEXIST);
	}

	struct owner_info info = { .cookie = cookie, .pid = o.pid };
	__builtin_memcpy(info.comm, o.comm, COMM_LEN);
	bpf_seq_write(ctx->meta->seq, &info, sizeof(info));
	return 0;
}

/* accept() and accept4() return a socket the kernel cloned from a listener
 * in softirq context, with the listener's owner: in a prefork server (nginx:
 * the master listens, workers accept) that is the wrong process. Here, once
 * per accepted connection and in the accepting process, the real owner is
 * noted by cookie; the socket's next event takes it (resolve_owner). Classic
 * tracepoints, as no tp_btf one fires in accept(): they cannot reach the
 * socket storage, so the note goes through the cookie map. */
static __always_inline int note_accepted(struct syscall_exit_ctx *ctx)
{
	long fd = ctx->ret;
	if (fd < 0 || fd > 0xfffff)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *file = 0;
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	/* accept() returned fd, so it is the new socket's file. */
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	struct tuple t = {};
	__u64 cookie;
	if (proto == IPPROTO_TCP) {
		/* The cookie exists: the socket's own transitions took it. */
		cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		/* Each read through these pointers is a probe read: the tuple
		 * only when a filter asks for it. */
		if (filter_netns || filter_family || filter_nports) {
			t.family = BPF_CORE_READ(sk, __sk_common.skc_family);
			t.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
			t.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
			t.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		} else {
			t.family = AF_INET; /* passes tuple_filtered's family check */
		}
	} else {
		cookie = tcp_behind_untrusted(sk, proto, &t);
	}
	if (!cookie || tuple_filtered(&t, cookie))
		return 0;
	struct owner o = {};
	owner_from_current(&o);
	bpf_map_update_elem(&accepted_owners, &cookie, &o, BPF_ANY);
	return 0;
}

#include "syscalls.h"
#include "drops.h"

/* The socket states the loader alerts on when one is held too long. */
static __always_inline bool watched_state(__u8 s)
{
	return s == TCP_SYN_SENT || s == TCP_SYN_RECV || s == TCP_CLOSE_WAIT || s == TCP_FIN_WAIT2;
}

/* Walks the TCP sockets of the reader's namespace (as dump_tcp) and sends
 * the queues the loader must see now: those of sockets held in a watched
 * state (so that stuck-state alerts come on time), or all of them at exit.
 * Written to the iterator's output, not the ring buffer: at exit there may
 * be more than the ring holds. (The storage map's own iterator would walk
 * every namespace at once, but some kernels refuse map element iterators.)
 * bpf_iter_tcp holds each full socket's lock while this runs; the queue is
 * claimed with cmpxchg all the same, as the other senders do. */
/* Set by the loader before each flush scan: report the connections held
 * by the peer's receive window this long (jiffies); 0: none. */
__u64 stall_after_jiffies = 0;
/* jiffies as a flush scan last saw them: with its own clock, the loader
 * learns the tick rate where the kernel's configuration does not say. */
__u64 scan_jiffies = 0;

/* Room for one stall notice: struct batch is too big for the stack twice. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct batch);
} stall_scratch SEC(".maps");

/* A connection that cannot send because the peer's receive window is full
 * (the kernel's RWND_LIMITED chrono running) for stall_after_jiffies is
 * told to the loader, which alerts on it (a zero window held). */
static __always_inline void stall_notice(struct bpf_iter__tcp *ctx, struct tcp_sock *tp)
{
	__u8 state = tp->inet_conn.icsk_inet.sk.__sk_common.skc_state;
	if (!stall_after_jiffies || (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT))
		return;
	if (BPF_CORE_READ_BITFIELD_PROBED(tp, chrono_type) != TCP_CHRONO_RWND_LIMITED ||
	    (__u32)bpf_jiffies64() - tp->chrono_start < stall_after_jiffies)
		return;
	__u32 zero = 0;
	struct batch *b = bpf_map_lookup_elem(&stall_scratch, &zero);
	if (!b)
		return;
	const struct sock *sk = (const struct sock *)tp;
	struct tuple t;
	read_tuple(&sk->__sk_common, &t);
	__builtin_memset(b, 0, sizeof(*b));
	b->magic = STALL_MAGIC;
	b->ev[0].sport = t.sport; /* no entry (n is 0): the local port only */
	b->cookie = bpf_get_socket_cookie((void *)sk);
	b->netns = t.netns;
	b->family = t.family;
	b->dport = t.dport;
	if (t.family == AF_INET6) {
		bpf_probe_read_kernel(b->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(b->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		bpf_probe_read_kernel(b->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_probe_read_kernel(b->daddr, 4, &sk->__sk_common.skc_daddr);
	}
	read_figures(sk, &b->closed);
	/* Its events may all be queued still: the notice names the owner. */
	b->cgroup = sk_cgroup(sk);
	struct owner *o = resolve_owner(bpf_sk_storage_get(&sk_states, tp, 0, 0), b->cookie);
	if (o) {
		b->pid = o->pid;
		__builtin_memcpy(b->comm, o->comm, COMM_LEN);
	}
	bpf_seq_write(ctx->meta->seq, b, sizeof(*b));
}

SEC("iter/tcp")
int flush_batches(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0; /* timewait and request sockets have no storage */
	scan_jiffies = bpf_jiffies64();
	if (!flush_all)
		stall_notice(ctx, tp);
	struct sk_state *st = bpf_sk_storage_get(&sk_states, tp, 0, 0);
	if (!st)
		return 0;
	__u32 n = st->n;
	if (n == 0 || n > BATCH_LEN)
		return 0;
	if (!flush_all) {
		/* The oldest entry is no younger than the state the socket
		 * holds now: sending on it is never late for that state's
		 * alert. */
		if (st->ev[0].ts_ns > flush_before_ns || !watched_state(st->ev[entry_index(n - 1)].newstate))
			return 0;
	}
	struct batch b;
	__builtin_memcpy(b.ev, st->ev, sizeof(b.ev));
	if (__sync_val_compare_and_swap(&st->n, n, 0) != n)
		return 0; /* the socket's own program sent it meanwhile */
	if (!flush_all)
		st->one_by_one = 1;
	fill_batch(&b, (const struct sock *)tp, st, n);
	bpf_seq_write(ctx->meta->seq, &b, sizeof(b));
	return 0;
}
