/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Who owns a socket: the process in whose system call it connected,
 * listened, closed or was accept()ed; kept in the socket's storage, or by
 * cookie where storage cannot be reached.
 */
#ifndef TCPTRACE_OWNERS_H
#define TCPTRACE_OWNERS_H

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
		st->send_at_once = 0;
		st->n = 0;
	}
	return st;
}

/* The owner of a socket: what its own system calls showed; else the
 * process that accept()ed it (its note, taken into the storage once); else
 * its listener's owner, copied by the clone; else what a scan or an MPTCP
 * note left by cookie. The accept() note is looked for whenever the owner
 * is not known from the socket itself, also for a socket whose listener
 * predates tracing (no storage to copy an owner from). */
static __always_inline struct owner *resolve_owner(struct sk_state *st, __u64 cookie)
{
	if (st && st->owner.pid && !st->inherited)
		return &st->owner;
	struct owner *accepted = bpf_map_lookup_elem(&accepted_owners, &cookie);
	if (accepted) {
		if (!st)
			return accepted; /* no storage (no memory for it): the note stays */
		st->owner = *accepted;
		st->inherited = 0;
		bpf_map_delete_elem(&accepted_owners, &cookie);
		return &st->owner;
	}
	if (st && st->owner.pid)
		return &st->owner;
	return bpf_map_lookup_elem(&owners, &cookie);
}

static __always_inline void owner_from_current(struct owner *o)
{
	o->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/* The transitions that only happen inside the owner's own system call. */
static __always_inline bool in_owner_syscall(int oldstate, int newstate)
{
	return (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) ||     /* connect() */
	       (oldstate == TCP_CLOSE && newstate == TCP_LISTEN) ||       /* listen() */
	       (oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) || /* close()/shutdown() first */
	       (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK);  /* close()/shutdown() second */
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
	read_tuple_untrusted(first, t);
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

#endif /* TCPTRACE_OWNERS_H */
