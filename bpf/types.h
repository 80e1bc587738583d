/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel side hands the loader: the event and batch records, the
 * socket and owner records of the scans, and the enums they use. bpf2go
 * makes the Go types from these (gen.go -type), so each is defined once, here.
 */
#ifndef TCPTRACE_TYPES_H
#define TCPTRACE_TYPES_H

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
const enum retransmit_kind *unused_retransmit_kind __attribute__((unused));

#endif /* TCPTRACE_TYPES_H */
