/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel side hands the loader: records of a socket's events, the
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
	EVENT_F_OWNER = 1 << 5,        /* the event had an owner: the record's */
	/* At X -> CLOSE: no file ever held the socket and it was not orphaned:
	 * an accepted connection still in its listener's accept queue. */
	EVENT_F_NO_FILE = 1 << 6,
};

#define COMM_LEN 16

/* What a socket's ESTABLISHED transition tells: its first RTT, the
 * SYN+ACK retries an accepted socket starts with, and both initial
 * sequence numbers (snd_una and rcv_nxt are one past them then). Kept in
 * each socket's storage until its queue goes, so kept small. */
struct est_figures {
	__u64 bytes_acked;    /* bytes sent and acknowledged by the peer */
	__u64 bytes_received;
	__u64 jiffies;        /* bpf_jiffies64(): the loader learns HZ from it */
	__u32 srtt_us;        /* smoothed RTT in 1/8 us, as the kernel keeps it */
	__u32 total_retrans;  /* segments retransmitted */
	__u32 snd_una;
	__u32 rcv_nxt;
};

/* What a socket's end tells: the figures above, the FIN's sequence number (write_seq is one
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
	/* Listeners: accept queue length and limit, and drops (as struct record). */
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

/* One thing that happened to a socket: what differs from one event of a
 * socket to the next. */
struct entry {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u16 sport;      /* local port then: 0 before connect() picks it */
	/* state: sk_err; rst_sent: sk_rst_reason; error and syscall error:
	 * errno; retransmit: enum retransmit_kind; drop: skb_drop_reason */
	__u16 reason;
	__u8 type;        /* enum event_type */
	__u8 oldstate;    /* a drop's: the segment's TCP flags */
	__u8 newstate;    /* for non-state events: the socket's state at the time */
	__u8 flags;       /* enum event_flags */
};

/* Five transitions make an ordinary connection's end (7->2, 2->1, 1->4,
 * 4->5, 5->7 for a client; 10->3, 3->1, 1->8, 8->9, 9->7 for a server); the
 * rest holds RSTs, errors, retransmissions. Each entry costs 16 bytes of
 * every traced socket's storage. A power of two: an index masked with
 * QUEUE_MASK is one every verifier (Linux 6.1's too) sees in bounds. */
#define QUEUE_LEN 8
#define QUEUE_MASK (QUEUE_LEN - 1)

enum record_kind {
	RECORD_EVENTS = 1, /* n entries: what happened, in order */
	RECORD_STALL = 2,  /* a flush scan's notice of a socket held by the peer's
			    * receive window: one entry (now, its state), the
			    * figures in closed */
};

/* All the kernel side sends: a socket's identity, then n entries. An event
 * sent at once is a record of one entry (reserved with room for one); a
 * socket's queue goes out as a record of its entries. The fields below
 * ev hold for the record's entries: the owner for those flagged
 * EVENT_F_OWNER, uid for state changes, the figures for its ESTABLISHED
 * and CLOSE entries (CLOSE is always last), the accept queue of the
 * listener an event concerns. */
struct record {
	__u64 cookie;     /* socket cookie; 0 when there is no socket */
	__u8 saddr[16];   /* local address (IPv4 in the first 4 bytes) */
	__u8 daddr[16];   /* remote address */
	__u32 netns;      /* network namespace inode */
	__u32 pid;        /* owning process (tgid); 0 when not known */
	__u32 uid;        /* socket owner uid (sk_uid) */
	__u16 dport;      /* remote port, host order */
	__u16 family;     /* AF_INET or AF_INET6 */
	char comm[COMM_LEN];
	__u64 cgroup;     /* cgroup v2 id of the socket (its creator's cgroup) */
	struct est_figures established;
	struct tcp_figures closed;
	/* A listener's accept queue, on events that concern one (a SYN+ACK
	 * retry, a drop at a listener, a failed accept()): length, limit and
	 * the listener's drop count. */
	__u32 qlen;
	__u32 qmax;
	__u32 drops;
	__u16 syscall;    /* an EVENT_SYSCALL_ERROR's call: enum syscall_id */
	__u8 kind;        /* enum record_kind */
	__u8 n;           /* entries */
	struct entry ev[QUEUE_LEN];
};

/* The size of a record of n entries: what is reserved and sent. */
#define RECORD_SIZE(n) (__builtin_offsetof(struct record, ev) + (n) * sizeof(struct entry))

/* enum tcp_chrono: the spell running in tp->chrono_type. */
#define TCP_CHRONO_RWND_LIMITED 2

/* Make the records and the enums reachable from BTF for bpf2go -type. */
const struct record *unused_record __attribute__((unused));
const enum record_kind *unused_record_kind __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum event_flags *unused_event_flags __attribute__((unused));
const struct sock_info *unused_sock_info __attribute__((unused));
const struct owner_info *unused_owner_info __attribute__((unused));
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
