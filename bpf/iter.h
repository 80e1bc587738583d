/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Socket scans (iter/tcp) and owner scans (iter/task_file): connections
 * older than tcptrace, orphans followed, TIME_WAIT counts, listeners.
 */
#ifndef TCPTRACE_ITER_H
#define TCPTRACE_ITER_H

/* iter/tcp walks the TCP hash tables of the reader's network namespace:
 * listeners, full sockets, request sockets and timewait sockets, the last
 * two invisible to inet_sock_set_state. The loader runs it at start (for
 * connections that predate tracing) and periodically (timewait sockets). */
static __always_inline int scan_socket(struct bpf_iter__tcp *ctx)
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
static __always_inline int scan_socket_file(struct bpf_iter__task_file *ctx)
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

#endif /* TCPTRACE_ITER_H */
