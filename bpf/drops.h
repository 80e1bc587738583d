/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packets the kernel dropped, with its reason (skb:kfree_skb, enum
 * skb_drop_reason): which TCP connection lost what, and why — a firewall
 * rule on this host (NETFILTER_DROP), a full receive queue, a checksum.
 *
 * kfree_skb fires for dropped packets only (consume_skb() is another
 * tracepoint), of every protocol: the program runs once per dropped packet
 * on the host, and returns at once for anything but TCP over IPv4/IPv6.
 * Its cost scales with drops, never with traffic. Each TCP drop that
 * passes the filters is one event, sent at once (never queued: a drop
 * storm must not crowd a socket's queue); the loader adds it to its
 * connection's counts by cookie or, with no socket, by 4-tuple.
 * Included by tcptrace.bpf.c after the shared definitions.
 */

/* SKB_CONSUMED on this kernel, from its BTF (set by the loader): not a
 * drop, though older kernels traced some through kfree_skb. */
const volatile __u32 drop_reason_consumed = 1;
/* NOT_SPECIFIED and QUEUE_PURGE (set by the loader from BTF): the kernel
 * gives them in every connection's life — the queues freed when a socket
 * goes, a late segment to a TIME_WAIT socket — and they tell no cause.
 * Left out, so that ordinary connections cost no event here. */
const volatile __u32 drop_ignored_a = 0xffffffff;
const volatile __u32 drop_ignored_b = 0xffffffff;

/* The TCP header of a packet, from its network header: false when the
 * packet is not TCP over IPv4 or IPv6. */
static __always_inline bool tcp_of_packet(const struct sk_buff *skb, struct tuple *t, __u8 *tcpflags,
					  __u8 saddr[16], __u8 daddr[16])
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u8 hdr[40];
	__u16 th;

	if (bpf_probe_read_kernel(hdr, 20, head + nh))
		return false;
	if (hdr[0] >> 4 == 4) {
		if (hdr[9] != IPPROTO_TCP || (hdr[0] & 0xf) < 5)
			return false;
		t->family = AF_INET;
		th = nh + (hdr[0] & 0xf) * 4;
		__builtin_memcpy(saddr, &hdr[12], 4);
		__builtin_memcpy(daddr, &hdr[16], 4);
	} else if (hdr[0] >> 4 == 6) {
		/* Extension headers are left out: TCP right after the header. */
		if (bpf_probe_read_kernel(hdr, 40, head + nh) || hdr[6] != IPPROTO_TCP)
			return false;
		t->family = AF_INET6;
		th = nh + 40;
		__builtin_memcpy(saddr, &hdr[8], 16);
		__builtin_memcpy(daddr, &hdr[24], 16);
	} else {
		return false;
	}
	__u8 tcp[14];
	if (bpf_probe_read_kernel(tcp, sizeof(tcp), head + th))
		return false;
	t->sport = (tcp[0] << 8) | tcp[1];
	t->dport = (tcp[2] << 8) | tcp[3];
	*tcpflags = tcp[13];
	return true;
}

static __always_inline int tcp_drop(const struct sk_buff *skb, __u32 reason, const struct sock *rx_sk)
{
	if (reason <= drop_reason_consumed || reason == drop_ignored_a || reason == drop_ignored_b)
		return 0;
	struct tuple pkt = {};
	__u8 psaddr[16] = {}, pdaddr[16] = {};
	__u8 tcpflags = 0;
	if (!tcp_of_packet(skb, &pkt, &tcpflags, psaddr, pdaddr))
		return 0;

	/* The socket the packet was for (rx_sk, Linux >= 6.11) or came from
	 * (skb->sk on the way out). Its cookie exists if tcptrace saw it. */
	const struct sock *sk = rx_sk ? rx_sk : BPF_CORE_READ(skb, sk);
	__u64 cookie = 0;
	__u8 state = 0;
	if (sk) {
		cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		state = BPF_CORE_READ(sk, __sk_common.skc_state);
	}
	/* The packet as this host's end sees it: sent by sk, or received. */
	struct tuple t = pkt;
	bool outgoing = sk && !rx_sk && state != TCP_LISTEN;
	if (!outgoing) {
		t.sport = pkt.dport;
		t.dport = pkt.sport;
	}
	if (sk)
		t.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	else
		t.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (!t.netns)
		return 0;
	if (tuple_filtered(&t, cookie))
		return 0;
	__u64 cgroup = 0;
	/* sk came from a probe read: its fields are probe reads too. */
	if (sk && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
		cgroup = BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
	if (cgroup_filtered(cgroup, cookie))
		return 0;
	struct owner *o = cookie ? bpf_map_lookup_elem(&owners, &cookie) : 0;
	if ((filter_pid || filter_comm_set) && owner_filtered(o))
		return 0;

	/* A drop's entry carries the segment's TCP flags in oldstate. */
	struct entry ent = entry_now(EVENT_DROP, t.sport, reason, state, sk ? 0 : EVENT_F_NO_SOCKET, o);
	ent.oldstate = tcpflags;
	struct record *r = record_of_one(&ent, cookie, &t, o);
	if (!r)
		return 0;
	if (outgoing) {
		__builtin_memcpy(r->saddr, psaddr, 16);
		__builtin_memcpy(r->daddr, pdaddr, 16);
	} else {
		__builtin_memcpy(r->saddr, pdaddr, 16);
		__builtin_memcpy(r->daddr, psaddr, 16);
	}
	r->cgroup = cgroup;
	if (state == TCP_LISTEN)
		read_listener(sk, &r->qlen, &r->qmax, &r->drops);
	send_record(r);
	return 0;
}

/* Linux >= 6.11: the socket the packet was for, if one was found. The
 * loader picks this program or the next from the prototype; before 5.17
 * there is no reason and neither loads. */
static __always_inline int on_kfree_skb(struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	return tcp_drop(skb, reason, rx_sk);
}

static __always_inline int on_kfree_skb_norxsk(struct sk_buff *skb, void *location, int reason)
{
	return tcp_drop(skb, reason, 0);
}
