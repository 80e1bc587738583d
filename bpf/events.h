/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The other events of a socket: retransmissions, SYN+ACK retries, RSTs
 * sent and received, errors reported to the application.
 */
#ifndef TCPTRACE_EVENTS_H
#define TCPTRACE_EVENTS_H

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
	struct sk_state *st = sk_state_of(sk, cookie, queue_events);
	struct owner *o = resolve_owner(st, cookie);
	if (owner_filtered(o))
		return 0;

	struct entry ent = entry_now(type, t.sport, reason, state, flags, o);
	bool send = false;
	if (through_queue(st, &t, &send) && queue_event(sk, st, &ent, send))
		return 0;

	struct record *r = record_of_one(&ent, cookie, &t, o);
	if (!r)
		return 0;
	read_addrs(&sk->__sk_common, t.family, r);
	r->cgroup = cgroup;
	send_record(r);
	return 0;
}

/* Attempts that sent nothing (Linux >= 6.17 passes their error: -EAGAIN
 * when the previous copy is still queued below TCP, -EBUSY, -ENOMEM). */
__u64 retransmit_failed = 0;

/* Linux >= 6.17: the tracepoint also fires for a retransmission that
 * failed and sent nothing; only those sent are counted as retransmissions.
 * The loader picks this program or the next from the prototype. */
static __always_inline int on_retransmit_err(const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (err) {
		__sync_fetch_and_add(&retransmit_failed, 1);
		return 0;
	}
	/* In SYN_SENT the retransmitted segment is the SYN itself. */
	return emit_sock_event(sk, EVENT_RETRANSMIT, retransmit_kind(sk), 0);
}

/* Older kernels: only retransmissions that were sent fire it. */
static __always_inline int on_retransmit(const struct sock *sk)
{
	return emit_sock_event(sk, EVENT_RETRANSMIT, retransmit_kind(sk), 0);
}

static __always_inline int on_synack_retransmit(const struct sock *sk, const struct request_sock *req)
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

	struct entry ent = entry_now(EVENT_SYNACK_RETRANSMIT, t.sport, 0, TCP_SYN_RECV, 0, o);
	struct record *r = record_of_one(&ent, cookie, &t, o);
	if (!r)
		return 0;
	r->cgroup = cgroup;
	/* A full accept queue drops the final ACK (tcp_check_req() ->
	 * syn_recv_sock fails) and the SYN+ACK is sent again: the listener's
	 * queue now says whether that is why. */
	read_listener(sk, &r->qlen, &r->qmax, &r->drops);
	read_addrs(&req->__req_common, t.family, r);
	send_record(r);
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

	struct entry ent = entry_now(EVENT_RST_SENT, t.sport, reason, 0, flags | EVENT_F_NO_SOCKET, 0);
	struct record *r = record_of_one(&ent, 0, &t, 0);
	if (!r)
		return 0;
	if (t.family == AF_INET6) {
		bpf_probe_read_kernel(r->daddr, 16, head + nh + 8);
		bpf_probe_read_kernel(r->saddr, 16, head + nh + 24);
	} else {
		bpf_probe_read_kernel(r->daddr, 4, head + nh + 12);
		bpf_probe_read_kernel(r->saddr, 4, head + nh + 16);
	}
	send_record(r);
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
static __always_inline int on_send_reset(const struct sock *sk, const struct sk_buff *skb, int reason)
{
	return rst_sent(sk, skb, reason, EVENT_F_REASON);
}

/* Older kernels: no reason argument. */
static __always_inline int on_send_reset_noreason(const struct sock *sk, const struct sk_buff *skb)
{
	return rst_sent(sk, skb, 0, 0);
}

static __always_inline int on_receive_reset(const struct sock *sk)
{
	return emit_sock_event(sk, EVENT_RST_RECEIVED, 0, 0);
}

static __always_inline int on_error_report(const struct sock *sk)
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

#endif /* TCPTRACE_EVENTS_H */
