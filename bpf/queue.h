/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-socket queue: a full socket's events wait in its storage and go
 * out as one batch when it closes, when the queue fills, or when a flush
 * scan finds the socket held in a state worth an alert (or stalled on a
 * full window). Batching is only when a queue is sent.
 */
#ifndef TCPTRACE_QUEUE_H
#define TCPTRACE_QUEUE_H

/* An entry's index, masked where the verifier sees it: the empty asm hides
 * what clang knows of i, or it would drop a mask it proves useless and the
 * verifier (Linux 6.1's) would lose the bound. */
static __always_inline __u32 entry_index(__u32 i)
{
	asm volatile("" : "+r"(i));
	return i & BATCH_MASK;
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
	if (BPF_CORE_READ_BITFIELD(tp, chrono_type) != TCP_CHRONO_RWND_LIMITED ||
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

static __always_inline int flush_socket(struct bpf_iter__tcp *ctx)
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

#endif /* TCPTRACE_QUEUE_H */
