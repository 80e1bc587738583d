/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A socket's state change (sock:inet_sock_set_state): the backbone of
 * every record.
 */
#ifndef TCPTRACE_STATE_H
#define TCPTRACE_STATE_H

/* The socket's owner at this transition: current, in the owner's own
 * system call (connect, listen, close, shutdown), else the one noted. */
static __always_inline struct owner *state_owner(const struct sock *sk, struct sk_state *st, __u64 cookie,
						 const struct tuple *t, int oldstate, int newstate,
						 struct owner *cur, __u8 *flags)
{
	if (in_owner_syscall(oldstate, newstate)) {
		struct owner *o = st ? &st->owner : cur; /* no memory for the storage: this event still has it */
		/* A server socket closing before its owner was known: an
		 * accept() note may wait for it, superseded now. Left in the
		 * LRU map, such notes would keep it full, and an eviction
		 * costs every accept() of a busy server (measured: 1.1 µs). */
		if (st && (st->inherited || !st->owner.pid) &&
		    (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT))
			bpf_map_delete_elem(&accepted_owners, &cookie);
		owner_from_current(o);
		if (st)
			st->inherited = 0;
		*flags |= EVENT_F_OWNER_SEEN;
		return o;
	}
	struct owner *o = resolve_owner(st, cookie);
	if (!o && (newstate == TCP_SYN_RECV || oldstate == TCP_SYN_RECV)) {
		struct listener_key lk = { .netns = t->netns, .port = t->sport };
		o = bpf_map_lookup_elem(&listeners, &lk);
	}
	return o;
}

/* The socket's flags an X -> CLOSE needs. SOCK_DONE (the peer's FIN was
 * processed) tells real TIME_WAIT from an orphan handed to a timewait
 * socket in FIN_WAIT2 (SOCK_DEAD alone); sk_shutdown cannot: close() sets
 * it. inet_child_forget() resets the connections a closing listener still
 * holds in its accept queue: tcp_disconnect() moves each to CLOSE before
 * sock_orphan(), and no file ever held it. */
static __always_inline __u8 state_flags(const struct sock *sk, int newstate, bool listener)
{
	unsigned long skflags = sk->__sk_common.skc_flags;
	__u8 flags = 0;

	if (skflags & (1UL << SOCK_DEAD))
		flags |= EVENT_F_SOCK_DEAD;
	if (skflags & (1UL << SOCK_DONE))
		flags |= EVENT_F_SOCK_DONE;
	if (newstate == TCP_CLOSE && !(skflags & (1UL << SOCK_DEAD)) && !sk->sk_socket && !listener)
		flags |= EVENT_F_NO_FILE;
	return flags;
}

/* Queue the transition in the socket's storage; true when done (queued or
 * sent with its queue), false when it must go out on its own. */
static __always_inline bool queue_state(const struct sock *sk, struct sk_state *st, const struct entry *ent,
					bool send)
{
	send = send || ent->newstate == TCP_CLOSE;
	if (ent->newstate == TCP_ESTABLISHED) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		if (tp)
			read_est_figures(tp, &st->established);
		/* An accepted socket whose SYN+ACK was retransmitted
		 * (tcp_create_openreq_child() starts total_retrans at the
		 * request's count): the loader holds those retries by
		 * 4-tuple until it sees this socket, and would alert on
		 * them as a handshake left half-made. Send it now. */
		send = send || (ent->oldstate == TCP_SYN_RECV && st->established.total_retrans);
	}
	if (!queue_event(sk, st, ent, send))
		return false;
	if (ent->newstate == TCP_CLOSE)
		st->send_at_once = 1; /* what trails the CLOSE follows at once */
	return true;
}

/* Send the transition at once, as a record of one entry. */
static __always_inline void send_state(const struct sock *sk, __u64 cookie, const struct tuple *t,
				       const struct owner *o, const struct entry *ent, __u64 cgroup)
{
	struct record *r = record_of_one(ent, cookie, t, o);
	if (!r)
		return;
	read_addrs(&sk->__sk_common, t->family, r);
	r->uid = sk->sk_uid.val;
	r->cgroup = cgroup ? cgroup : sk_cgroup(sk);
	/* The figures are used at the handshake (its RTT) and at the end. */
	if (ent->newstate == TCP_ESTABLISHED) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		if (tp)
			read_est_figures(tp, &r->established);
	} else if (ent->newstate == TCP_CLOSE) {
		read_figures(sk, &r->closed);
	}
	send_record(r);
}

/* The tuple of a transition; false when it is not worth an event. */
static __always_inline bool state_tuple(const struct sock *sk, int oldstate, int newstate, struct tuple *t)
{
	/* The tracepoint also fires for other inet protocols (SCTP, MPTCP). */
	if (sk->sk_protocol != IPPROTO_TCP)
		return false;
	read_tuple(&sk->__sk_common, t);
	/* At X -> CLOSE, tcp_set_state() has released the local port
	 * (inet_put_port() zeroes skc_num) before the tracepoint fires; the
	 * socket still knows the port it had. */
	if (!t->sport && newstate == TCP_CLOSE)
		t->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	/* Before Linux 6.15, inet_csk_clone_lock() reports LISTEN -> SYN_RECV
	 * before it sets the new socket's addresses, while the socket still
	 * carries a copy of its listener's cookie. Nothing in that event is the
	 * connection's own: skip it, SYN_RECV -> ESTABLISHED follows at once. */
	return !(oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV && t->dport == 0);
}

static __always_inline int on_set_state(const struct sock *sk, const int oldstate, const int newstate)
{
	struct tuple t;
	if (!state_tuple(sk, oldstate, newstate, &t))
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	if (tuple_filtered(&t, cookie))
		return 0;
	/* Every event of a full socket carries its cgroup, also a connection
	 * older than tcptrace whose first transition is not its first. Read
	 * here for a filter; a queue's record reads it when sent. */
	__u64 cgroup = cgroup_filter_on() ? sk_cgroup(sk) : 0;
	if (cgroup_filtered(cgroup, cookie))
		return 0;
	if (cgroup_filter_on() && newstate == TCP_CLOSE) {
		__u8 one = 1;
		bpf_map_update_elem(&cgroup_matched, &cookie, &one, BPF_ANY);
	}

	bool listener = (oldstate == TCP_LISTEN && newstate != TCP_SYN_RECV) || newstate == TCP_LISTEN;
	struct sk_state *st = sk_state_of(sk, cookie, in_owner_syscall(oldstate, newstate) || queue_events);
	if (st && oldstate == TCP_CLOSE)
		st->send_at_once = 0; /* moving again: connect() after a failed attempt */
	struct owner cur = {};
	__u8 flags = 0;
	struct owner *o = state_owner(sk, st, cookie, &t, oldstate, newstate, &cur, &flags);
	if (owner_filtered(o)) {
		/* Not ours now; what was queued while it was still goes out. */
		if (st && newstate == TCP_CLOSE)
			queue_event(sk, st, 0, true);
		return 0;
	}
	flags |= state_flags(sk, newstate, listener);
	/* tcp_reset() and tcp_write_err() set sk_err before tcp_done() moves
	 * the socket to CLOSE. */
	struct entry ent = entry_now(EVENT_STATE, t.sport, sk->sk_err, newstate, flags, o);
	ent.oldstate = oldstate;

	/* Listeners go out at once: the loader counts a listener's SYN+ACK
	 * retransmissions on its record and knows servers by their listening
	 * ports, both while it listens. */
	bool send = false;
	if (!listener && through_queue(st, &t, &send) && queue_state(sk, st, &ent, send))
		return 0;
	send_state(sk, cookie, &t, o, &ent, cgroup);
	return 0;
}

#endif /* TCPTRACE_STATE_H */
