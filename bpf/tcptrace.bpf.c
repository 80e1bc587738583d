// SPDX-License-Identifier: GPL-2.0
/*
 * tcptrace kernel side: the program entry points, each a line. The logic is
 * in headers by concern:
 *   types.h     the records handed to the loader (bpf2go's Go types)
 *   common.h    per-socket state, load-time settings, maps, the ring buffer
 *   filters.h   --port, --netns, -4/-6, --pid, --comm, cgroup filters
 *   figures.h   what a socket knows at a transition: bytes, RTT, sequence
 *               numbers, tcp_info, stalls, a listener's queue
 *   owners.h    which process owns a socket
 *   queue.h     the per-socket queue and the flush scan that sends it
 *   state.h     state changes (the backbone of every record)
 *   events.h    retransmissions, SYN+ACK retries, RSTs, errors
 *   iter.h      socket and owner scans
 *   syscalls.h  failed connect/bind/listen/accept, accept()'s owner
 *   drops.h     packets dropped, with the kernel's reason
 *
 * What each program runs per: state changes, retransmissions, RSTs and
 * errors per connection event; the syscall exits per call of
 * connect/bind/listen/accept; kfree_skb per dropped packet; the scans per
 * socket when the loader runs them; send/recv (--owner-io only) per I/O.
 *
 * tp_btf rather than classic tracepoints: it hands us the real struct sock,
 * so we can take the socket cookie (refused in classic tracepoints), read
 * sk_flags/sk_err at the transition, and each program has its own recursion
 * protection instead of being skipped when another tracer runs on the CPU.
 */
#include "kernel.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#include "types.h"
#include "common.h"
#include "filters.h"
#include "figures.h"
#include "owners.h"
#include "queue.h"
#include "state.h"
#include "events.h"
#include "iter.h"
#include "syscalls.h"
#include "drops.h"

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	return on_set_state(sk, oldstate, newstate);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit_err, const struct sock *sk, const struct sk_buff *skb, int err)
{
	return on_retransmit_err(sk, skb, err);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit, const struct sock *sk)
{
	return on_retransmit(sk);
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	return on_synack_retransmit(sk, req);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	return on_send_reset(sk, skb, reason);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset_noreason, const struct sock *sk, const struct sk_buff *skb)
{
	return on_send_reset_noreason(sk, skb);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, const struct sock *sk)
{
	return on_receive_reset(sk);
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report, const struct sock *sk)
{
	return on_error_report(sk);
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	return scan_socket(ctx);
}

SEC("iter/task_file")
int dump_owners(struct bpf_iter__task_file *ctx)
{
	return scan_socket_file(ctx);
}

SEC("iter/tcp")
int flush_queues(struct bpf_iter__tcp *ctx)
{
	return flush_socket(ctx);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(handle_kfree_skb, struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	return on_kfree_skb(skb, location, reason, rx_sk);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(handle_kfree_skb_norxsk, struct sk_buff *skb, void *location, int reason)
{
	return on_kfree_skb_norxsk(skb, location, reason);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int handle_exit_connect(struct syscall_exit_ctx *ctx)
{
	return exit_connect(ctx);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int handle_exit_bind(struct syscall_exit_ctx *ctx)
{
	return exit_bind(ctx);
}

SEC("tracepoint/syscalls/sys_exit_listen")
int handle_exit_listen(struct syscall_exit_ctx *ctx)
{
	return exit_listen(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4(struct syscall_exit_ctx *ctx)
{
	return exit_accept4(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept(struct syscall_exit_ctx *ctx)
{
	return exit_accept(ctx);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(handle_send_length, struct sock *sk)
{
	return note_owner(sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(handle_recv_length, struct sock *sk)
{
	return note_owner(sk);
}
