/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-socket queue: a full socket's entries wait in its storage and go
 * out as one record when it closes, when the queue fills, or when a flush
 * scan finds the socket held in a state worth an alert (or stalled on a
 * full window). The queue decides only when entries are sent: a queued
 * entry and one sent at once reach the loader in the same record format.
 */
#ifndef TCPTRACE_QUEUE_H
#define TCPTRACE_QUEUE_H

/* An entry's index, masked where the verifier sees it: the empty asm hides
 * what clang knows of i, or it would drop a mask it proves useless and the
 * verifier (Linux 6.1's) would lose the bound. */
static __always_inline __u32 entry_index(__u32 i)
{
	asm volatile("" : "+r"(i));
	return i & QUEUE_MASK;
}

/* Whether the socket's events wait in its queue: queueing is on, the socket
 * has storage, what it sends is not due at once, and a flush scan can reach
 * its namespace. */
static __always_inline bool queues(const struct sk_state *st, const struct tuple *t)
{
	return queue_events && st && !st->send_at_once && (!queue_netns || t->netns == queue_netns);
}

/* Whether ent goes through the socket's queue (queue_event), and whether
 * the queue must go with it now (*send): always, when the loader stopped
 * queueing (it drains before it detaches, and nothing may wait then).
 * Also when the socket no longer queues but entries wait in its queue: an
 * append whose cmpxchg lost to a flush scan's claim retries into the
 * emptied queue before the scan sets send_at_once, and nothing would send
 * it after. They go now, with ent. */
static __always_inline bool through_queue(const struct sk_state *st, const struct tuple *t, bool *send)
{
	if (queues(st, t)) {
		*send = *send || queues_stopped;
		return true;
	}
	if (st && st->n) {
		*send = true;
		return true;
	}
	return false;
}

/* What a full socket's record says of it: its addresses, uid, cgroup and
 * owner as they are now (none of it changes over the socket's life but the
 * local port, which each entry keeps). */
static __always_inline void start_socket_record(struct record *r, const struct sock *sk, __u64 cookie,
						const struct owner *o, __u8 n)
{
	struct tuple t;

	read_tuple(&sk->__sk_common, &t);
	start_record(r, cookie, &t, o, n);
	read_addrs(&sk->__sk_common, t.family, r);
	r->uid = sk->sk_uid.val;
	r->cgroup = sk_cgroup(sk);
}

/* Fill a record of the queue's n entries (already in r->ev): the socket,
 * and the figures of its ESTABLISHED entry and of its CLOSE entry, which
 * is always the last one (its figures are the socket's now). */
static __always_inline void fill_queue_record(struct record *r, const struct sock *sk, struct sk_state *st,
					      __u32 n)
{
	start_socket_record(r, sk, st->cookie, resolve_owner(st, st->cookie), n);
	r->established = st->established;
	if (n > 0 && n <= QUEUE_LEN) {
		struct entry *last = &r->ev[entry_index(n - 1)];
		if (last->type == EVENT_STATE && last->newstate == TCP_CLOSE)
			read_figures(sk, &r->closed);
	}
}

/* Queue ent for a full socket, or send the queue with it when send is set
 * (or when the queue is full); with no ent, send what is queued. Returns
 * false when it could do neither, and the caller sends the entry alone. */
static __always_inline bool queue_event(const struct sock *sk, struct sk_state *st,
					const struct entry *ent, bool send)
{
	/* Each try fails only when a flush scan claimed the queue meanwhile;
	 * the queue is then empty, and the next try appends to it. */
	for (int try = 0; try < 3; try++) {
		__u32 n = st->n;
		if (n > QUEUE_LEN)
			return false; /* cannot happen; tells the verifier n is bounded */
		if (!ent && !n)
			return true;
		if (ent && n < QUEUE_LEN && !send) {
			st->ev[entry_index(n)] = *ent;
			if (__sync_val_compare_and_swap(&st->n, n, n + 1) == n)
				return true;
			continue;
		}
		struct record *r = bpf_ringbuf_reserve(&events, RECORD_SIZE(QUEUE_LEN), 0);
		if (!r) {
			/* The ring is full: the queue is lost with the entry. */
			if (__sync_val_compare_and_swap(&st->n, n, 0) == n)
				__sync_fetch_and_add(&lost_events, n + (ent ? 1 : 0));
			return true;
		}
		__builtin_memcpy(r->ev, st->ev, sizeof(r->ev));
		bool with_ent = ent && n < QUEUE_LEN;
		if (with_ent)
			r->ev[entry_index(n)] = *ent;
		if (__sync_val_compare_and_swap(&st->n, n, 0) != n) {
			bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);
			continue;
		}
		fill_queue_record(r, sk, st, with_ent ? n + 1 : n);
		send_record(r);
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

/* Room for one stall notice: struct record is too big for the stack twice. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct record);
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
	struct record *r = bpf_map_lookup_elem(&stall_scratch, &zero);
	if (!r)
		return;
	const struct sock *sk = (const struct sock *)tp;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	/* Its events may all be queued still: the notice names the owner. */
	struct owner *o = resolve_owner(bpf_sk_storage_get(&sk_states, tp, 0, 0), cookie);
	start_socket_record(r, sk, cookie, o, 1);
	r->kind = RECORD_STALL;
	/* The scan writes whole records: no stale entry of an earlier notice. */
	__builtin_memset(r->ev, 0, sizeof(r->ev));
	r->ev[0] = entry_now(0, sk->__sk_common.skc_num, 0, state, 0, o);
	read_figures(sk, &r->closed);
	bpf_seq_write(ctx->meta->seq, r, sizeof(*r));
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
	if (n == 0 || n > QUEUE_LEN)
		return 0;
	if (!flush_all) {
		/* The oldest entry is no younger than the state the socket
		 * holds now: sending on it is never late for that state's
		 * alert. */
		if (st->ev[0].ts_ns > flush_before_ns || !watched_state(st->ev[entry_index(n - 1)].newstate))
			return 0;
	}
	struct record r;
	__builtin_memcpy(r.ev, st->ev, sizeof(r.ev));
	if (__sync_val_compare_and_swap(&st->n, n, 0) != n)
		return 0; /* the socket's own program sent it meanwhile */
	fill_queue_record(&r, (const struct sock *)tp, st, n);
	/* Whole records: the loader reads the scan's output in their size. */
	if (bpf_seq_write(ctx->meta->seq, &r, sizeof(r))) {
		/* The read's buffer (8 pages: about 89 records) is full. The
		 * kernel drops what this run wrote and shows the socket again
		 * in the next read(), which must find the queue as it was.
		 * Whatever takes the socket's lock waits for the scan, so
		 * nothing appends meanwhile; if something did, the entries are
		 * counted lost rather than lost silently. */
		__builtin_memcpy(st->ev, r.ev, sizeof(r.ev));
		if (__sync_val_compare_and_swap(&st->n, 0, n) != 0)
			__sync_fetch_and_add(&lost_events, n);
		return 0;
	}
	if (!flush_all)
		st->send_at_once = 1;
	return 0;
}

#endif /* TCPTRACE_QUEUE_H */
