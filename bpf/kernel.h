/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types tcptrace reads, declared by hand instead of a full
 * vmlinux.h. Every struct is marked preserve_access_index, so each field
 * access is a CO-RE relocation resolved against the running kernel's BTF at
 * load time: the layout below only has to name the fields, not match offsets.
 * Keeping this small makes `make generate` reproducible on any build host.
 */
#ifndef TCPTRACE_KERNEL_H
#define TCPTRACE_KERNEL_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI constants (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_F_NO_PREALLOC = 1U << 0,
	BPF_F_NO_COMMON_LRU = 1U << 1,
	BPF_F_CLONE = 1U << 9,
};
enum {
	BPF_SK_STORAGE_GET_F_CREATE = 1ULL << 0,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};
enum {
	BPF_RB_AVAIL_DATA = 0,
};

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262

/* include/net/sock.h: enum sock_flags, bit numbers in sk_flags. */
#define SOCK_DEAD 0
#define SOCK_DONE 1

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

typedef struct {
	__s64 counter;
} atomic64_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	unsigned long skc_flags;
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));

typedef struct {
	unsigned int val;
} kuid_t;

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;
/* Linux >= 6.18: some sockets count drops per NUMA node here. */
struct numa_drop_counters {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));
struct socket;
struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;
	kuid_t sk_uid;
	struct sock_cgroup_data sk_cgrp_data;
	/* Accept queue of a listener: its length and limit (the listen()
	 * backlog capped by net.core.somaxconn). */
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
	/* Packets the socket dropped; a listener counts each SYN or final
	 * ACK it throws away (tcp_listendrop). */
	atomic_t sk_drops;
	struct numa_drop_counters *sk_drop_counters;
	/* NULL for a socket no file holds: orphaned by close(), or accepted
	 * by the kernel and still waiting in its listener's accept queue. */
	struct socket *sk_socket;
} __attribute__((preserve_access_index));
struct inet_sock {
	struct sock sk;
	__be16 inet_sport; /* kept when the port is released at CLOSE */
} __attribute__((preserve_access_index));


struct mptcp_sock {
	struct sock *first;
} __attribute__((preserve_access_index));

/* Per-socket settings: TCP_SYNCNT (0: the sysctl) and TCP_USER_TIMEOUT (ms). */
struct inet_connection_sock {
	struct inet_sock icsk_inet;
	__u8 icsk_syn_retries;
	__u32 icsk_user_timeout;
	/* Congestion state (TCP_CA_Loss after a timeout, TCP_CA_Recovery in
	 * fast recovery), the timer that fired, timeouts backed off, zero-
	 * window probes unanswered. */
	__u8 icsk_ca_state : 5;
	__u8 icsk_pending;
	__u8 icsk_backoff;
	__u8 icsk_probes_out;
	struct {
		__u16 rcv_mss;
	} icsk_ack;
} __attribute__((preserve_access_index));
struct minmax_sample {
	__u32 t;
	__u32 v;
} __attribute__((preserve_access_index));
struct minmax {
	struct minmax_sample s[3];
} __attribute__((preserve_access_index));
struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 srtt_us;
	__u32 total_retrans;
	/* Sequence space: the oldest unacked byte, the next byte expected,
	 * the end of what the application wrote (a FIN takes one). */
	__u32 snd_una;
	__u32 rcv_nxt;
	__u32 write_seq;
	/* What tcp_info reports (tcp_get_info()). */
	__u32 snd_cwnd;
	__u32 snd_ssthresh;
	struct minmax rtt_min;
	__u32 delivered;
	__u32 lost_out;
	__u32 reordering;
	__u32 mss_cache;
	__u32 dsack_dups;
	/* The chrono statistics in jiffies: busy, limited by the peer's
	 * receive window, by the send buffer; the one running since start. */
	__u8 chrono_type : 2;
	__u32 chrono_start;
	__u32 chrono_stat[3];
	struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

struct inet_timewait_sock {
	struct sock_common __tw_common;
	volatile unsigned char tw_substate;
} __attribute__((preserve_access_index));

struct tcp_timewait_sock {
	struct inet_timewait_sock tw_sk;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct seq_file;

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));
struct file {
	void *private_data;
	struct inode *f_inode;
} __attribute__((preserve_access_index));
#define S_IFMT 00170000
#define S_IFSOCK 0140000

struct fdtable {
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	unsigned int uid;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

struct bpf_map;

struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	struct sock *sk;
	void *value;
} __attribute__((preserve_access_index));

/* The syscalls:sys_exit_* tracepoints' record (the format file in tracefs):
 * the common header, the syscall number, the return value. */
struct syscall_exit_ctx {
	__u64 common;
	int nr;   /* __syscall_nr: 4 bytes, then padding */
	int pad;
	long ret;
};
struct request_sock {
	struct sock_common __req_common;
} __attribute__((preserve_access_index));

struct net_device {
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
} __attribute__((preserve_access_index));

#endif /* TCPTRACE_KERNEL_H */
