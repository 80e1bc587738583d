/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a socket knows, read at its transitions (never per packet): bytes,
 * RTT, sequence numbers, tcp_info, the chrono stalls, a listener's queue,
 * and the kind of a retransmission.
 */
#ifndef TCPTRACE_FIGURES_H
#define TCPTRACE_FIGURES_H

/* The packets a socket dropped: sk_drops, or since Linux 6.18 per-NUMA
 * counters for the sockets that have them (sk_drops_read()). */
static __always_inline __u32 sk_drops_of(const struct sock *sk)
{
	__u32 n = BPF_CORE_READ(sk, sk_drops.counter);

	if (bpf_core_field_exists(sk->sk_drop_counters)) {
		struct numa_drop_counters *dc = BPF_CORE_READ(sk, sk_drop_counters);
		if (dc)
			n += BPF_CORE_READ(dc, drops0.counter) + BPF_CORE_READ(dc, drops1.counter);
	}
	return n;
}

/* A listener's accept queue, as the events that concern one carry it. */
static __always_inline void read_listener(const struct sock *sk, __u32 *qlen, __u32 *qmax, __u32 *drops)
{
	*qlen = BPF_CORE_READ(sk, sk_ack_backlog);
	*qmax = BPF_CORE_READ(sk, sk_max_ack_backlog);
	*drops = sk_drops_of(sk);
}

/* The figures of ESTABLISHED. */
static __always_inline void read_est_figures(const struct tcp_sock *tp, struct est_figures *f)
{
	f->bytes_acked = tp->bytes_acked;
	f->bytes_received = tp->bytes_received;
	f->jiffies = bpf_jiffies64();
	f->srtt_us = tp->srtt_us;
	f->total_retrans = tp->total_retrans;
	f->snd_una = tp->snd_una;
	f->rcv_nxt = tp->rcv_nxt;
}

/* The figures of a socket's end: read once per connection, never per
 * packet. The chrono running now is added as tcp_get_info() does. */
static __always_inline void read_figures(const struct sock *sk, struct tcp_figures *f)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return;
	read_est_figures(tp, &f->base);
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)tp;
	f->write_seq = tp->write_seq;
	/* The socket's own settings, which override the namespace's sysctls
	 * in the kernel's timers: explanations quote what was in force. */
	f->syn_retries = icsk->icsk_syn_retries;
	f->user_timeout = icsk->icsk_user_timeout;
	f->probes = icsk->icsk_probes_out;
	f->rcv_mss = icsk->icsk_ack.rcv_mss;
	f->cwnd = tp->snd_cwnd;
	f->ssthresh = tp->snd_ssthresh;
	f->min_rtt_us = tp->rtt_min.s[0].v;
	f->delivered = tp->delivered;
	f->lost = tp->lost_out;
	f->reordering = tp->reordering;
	f->snd_mss = tp->mss_cache;
	f->dsack_dups = tp->dsack_dups;
	/* Spelled out: Linux 6.1's verifier refuses a stack array indexed
	 * by the running chrono ("variable-offset read from stack"). */
	__u32 running = BPF_CORE_READ_BITFIELD(tp, chrono_type);
	__u32 spell = (__u32)f->base.jiffies - tp->chrono_start;
	f->busy = tp->chrono_stat[0] + (running == 1 ? spell : 0);
	f->rwnd_limited = tp->chrono_stat[1] + (running == TCP_CHRONO_RWND_LIMITED ? spell : 0);
	f->sndbuf_limited = tp->chrono_stat[2] + (running == 3 ? spell : 0);
	f->stalled_for = running == TCP_CHRONO_RWND_LIMITED ? spell : 0;
}

#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4
#define ICSK_TIME_LOSS_PROBE 5

static __always_inline __u16 retransmit_kind(const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return RETRANS_OTHER;
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)tp;
	__u8 ca = BPF_CORE_READ_BITFIELD(icsk, icsk_ca_state);
	if (icsk->icsk_pending == ICSK_TIME_LOSS_PROBE)
		return RETRANS_TLP;
	if (ca == TCP_CA_LOSS)
		return RETRANS_RTO | (__u16)icsk->icsk_backoff << 8;
	if (ca == TCP_CA_RECOVERY)
		return RETRANS_FAST;
	return RETRANS_OTHER;
}

#endif /* TCPTRACE_FIGURES_H */
