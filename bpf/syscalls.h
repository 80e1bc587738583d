/* SPDX-License-Identifier: GPL-2.0 */
/*
 * System calls on TCP sockets: who accept()ed a connection, and the errors
 * an application meets that no socket transition shows — connect() with no
 * free local port (EADDRNOTAVAIL), bind()/listen() on a port in use
 * (EADDRINUSE), accept() at the fd limit (EMFILE, ENFILE), a policy that
 * refuses (EACCES, EPERM), no route (ENETUNREACH).
 *
 * Classic tracepoints (syscalls:sys_enter_X / sys_exit_X), as no tp_btf
 * tracepoint fires in these calls. Each runs once per call of its system
 * call, for every process (whatever the filters): a cost per connect(),
 * bind(), listen() and accept(), never per byte or packet. The entry notes
 * the fd (and the address asked for) by thread; the exit takes the note
 * and, only when the call failed, finds the socket and sends an event.
 * Included by tcptrace.bpf.c after the shared definitions.
 */

/* What a call's entry noted for its exit, by thread. */
struct pending_call {
	__u32 fd;
	__u16 syscall;
	__u16 addrlen;
	__u8 addr[28]; /* struct sockaddr_in or sockaddr_in6, as passed */
};

/* LRU: a thread that never returns (killed in the call) leaves no entry
 * behind for long. Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): an update takes
 * no lock shared by all CPUs (the entry is still found from any CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_call);
} pending_calls SEC(".maps");

static __always_inline int call_entered(struct syscall_enter_ctx *ctx, __u16 syscall, bool addr)
{
	struct pending_call p = { .fd = ctx->args[0], .syscall = syscall };

	if (addr) {
		__u32 len = ctx->args[2];
		if (len > sizeof(p.addr))
			len = sizeof(p.addr);
		if (bpf_probe_read_user(p.addr, len & 31, (void *)ctx->args[1]) == 0)
			p.addrlen = len;
	}
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pending_calls, &id, &p, BPF_ANY);
	return 0;
}

/* Errors that are no failure: a non-blocking connect() under way, no
 * connection to accept yet, a signal. */
static __always_inline bool benign(__u16 syscall, long err)
{
	switch (err) {
	case 4:   /* EINTR */
	case 11:  /* EAGAIN */
	case 114: /* EALREADY */
	case 115: /* EINPROGRESS */
	case 106: /* EISCONN */
		return true;
	}
	return false;
}

/* The TCP socket behind fd in the current process, NULL if fd is not one. */
static __always_inline struct sock *tcp_of_fd(__u32 fd)
{
	if (fd > 0xfffff)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *file = 0;
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return sk;
}

/* The address a bind() or connect() asked for, from the caller's sockaddr. */
static __always_inline void sockaddr_to(const struct pending_call *p, __u8 addr[16], __u16 *port)
{
	__u16 family = p->addr[0] | (p->addr[1] << 8);

	*port = (p->addr[2] << 8) | p->addr[3];
	if (family == AF_INET6 && p->addrlen >= 24)
		__builtin_memcpy(addr, &p->addr[8], 16);
	else if (family == AF_INET && p->addrlen >= 8)
		__builtin_memcpy(addr, &p->addr[4], 4);
}

static __always_inline int call_failed(long err, const struct pending_call *p)
{
	struct sock *sk = tcp_of_fd(p->fd);
	if (!sk)
		return 0;
	struct tuple t = {};
	t.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	__u8 addr[16] = {};
	__u16 port = 0;
	if (p->syscall == SYSCALL_BIND || p->syscall == SYSCALL_CONNECT)
		sockaddr_to(p, addr, &port);
	if (p->syscall == SYSCALL_BIND)
		t.sport = port;
	else if (p->syscall == SYSCALL_CONNECT)
		t.dport = port;
	/* Its cookie exists if a tracepoint or scan saw the socket (every
	 * connect() that got as far as SYN_SENT); 0 otherwise. */
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (tuple_filtered(&t, cookie))
		return 0;
	__u64 cgroup = bpf_get_current_cgroup_id();
	if (cgroup_filtered(cgroup, cookie))
		return 0;
	struct owner cur = {};
	owner_from_current(&cur);
	if (owner_filtered(&cur))
		return 0;

	struct event *e = reserve_event();
	if (!e)
		return 0;
	fill_event(e, EVENT_SYSCALL_ERROR, cookie, &t, &cur);
	__builtin_memset(e->saddr, 0, 16);
	__builtin_memset(e->daddr, 0, 16);
	if (t.family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	if (p->syscall == SYSCALL_BIND)
		__builtin_memcpy(e->saddr, addr, 16);
	else if (p->syscall == SYSCALL_CONNECT)
		__builtin_memcpy(e->daddr, addr, 16);
	e->cgroup = cgroup;
	e->reason = -err;
	e->syscall = p->syscall;
	e->newstate = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (p->syscall == SYSCALL_ACCEPT)
		read_listener(sk, &e->qlen, &e->qmax, &e->drops);
	submit_event(e);
	return 0;
}

static __always_inline int call_exited(struct syscall_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	long ret = ctx->ret;

	if (ret >= 0 || benign(0, -ret)) {
		bpf_map_delete_elem(&pending_calls, &id);
		return 0;
	}
	struct pending_call *p = bpf_map_lookup_elem(&pending_calls, &id);
	if (!p)
		return 0;
	struct pending_call copy = *p;
	bpf_map_delete_elem(&pending_calls, &id);
	return call_failed(ret, &copy);
}

static __always_inline int enter_connect(struct syscall_enter_ctx *ctx)
{
	return call_entered(ctx, SYSCALL_CONNECT, true);
}

static __always_inline int exit_connect(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx);
}

static __always_inline int enter_bind(struct syscall_enter_ctx *ctx)
{
	return call_entered(ctx, SYSCALL_BIND, true);
}

static __always_inline int exit_bind(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx);
}

static __always_inline int enter_listen(struct syscall_enter_ctx *ctx)
{
	return call_entered(ctx, SYSCALL_LISTEN, false);
}

static __always_inline int exit_listen(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx);
}

static __always_inline int enter_accept4(struct syscall_enter_ctx *ctx)
{
	return call_entered(ctx, SYSCALL_ACCEPT, false);
}

static __always_inline int enter_accept(struct syscall_enter_ctx *ctx)
{
	return call_entered(ctx, SYSCALL_ACCEPT, false);
}

/* accept() returns the new socket's fd: note its owner (note_accepted),
 * or report why it failed. */
static __always_inline int accept_exited(struct syscall_exit_ctx *ctx)
{
	if (ctx->ret >= 0) {
		__u64 id = bpf_get_current_pid_tgid();
		bpf_map_delete_elem(&pending_calls, &id);
		return note_accepted(ctx);
	}
	return call_exited(ctx);
}

static __always_inline int exit_accept4(struct syscall_exit_ctx *ctx)
{
	return accept_exited(ctx);
}

static __always_inline int exit_accept(struct syscall_exit_ctx *ctx)
{
	return accept_exited(ctx);
}
