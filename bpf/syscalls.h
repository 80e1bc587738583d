/* SPDX-License-Identifier: GPL-2.0 */
/*
 * System calls on TCP sockets: who accept()ed a connection, and the errors
 * an application meets that no socket transition shows — connect() with no
 * free local port (EADDRNOTAVAIL), bind()/listen() on a port in use
 * (EADDRINUSE), accept() at the fd limit (EMFILE, ENFILE), a policy that
 * refuses (EACCES, EPERM), no route (ENETUNREACH).
 *
 * Classic tracepoints (syscalls:sys_exit_X), as no tp_btf tracepoint fires
 * in these calls. Each runs once per call of its system call, for every
 * process (whatever the filters): a cost per connect(), bind(), listen()
 * and accept(), never per byte or packet. Only the exits: a call that
 * succeeded costs a compare (an accept() also the note of its owner); one
 * that failed reads its arguments from the registers it was entered with
 * (bpf_task_pt_regs(), Linux >= 5.15), finds the socket and sends an event.
 * No entry program, so nothing is kept between entry and exit.
 * Included by tcptrace.bpf.c after the shared definitions.
 */

/* The user registers of the current system call: x86-64 passes the
 * arguments in di, si, dx and keeps the call's number in orig_ax; arm64 in
 * x0, x1, x2, where the return value overwrites x0 (its first argument is
 * kept in orig_x0) and the number in syscallno. One object serves both:
 * CO-RE keeps the flavour whose fields the running kernel's pt_regs has. */
struct pt_regs___x86 {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	__u64 regs[31];
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));

/* A failed call: which, and the arguments it was given. */
struct failed_call {
	__u16 syscall;
	__u16 addrlen;
	__u32 fd;
	__u8 addr[28]; /* struct sockaddr_in or sockaddr_in6, as passed */
};

/* The first three arguments of the current call, if its registers are
 * those of the call whose exit this is (nr): false otherwise (a compat
 * task, whose arguments are elsewhere, or an architecture CO-RE does not
 * know). */
static __always_inline bool call_args(long nr, unsigned long args[3])
{
	void *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return false;
	if (bpf_core_field_exists(((struct pt_regs___x86 *)0)->di)) {
		struct pt_regs___x86 *r = regs;
		args[0] = BPF_CORE_READ(r, di);
		args[1] = BPF_CORE_READ(r, si);
		args[2] = BPF_CORE_READ(r, dx);
		return BPF_CORE_READ(r, orig_ax) == nr;
	}
	if (bpf_core_field_exists(((struct pt_regs___arm64 *)0)->orig_x0)) {
		struct pt_regs___arm64 *r = regs;
		args[0] = BPF_CORE_READ(r, orig_x0);
		args[1] = BPF_CORE_READ(r, regs[1]);
		args[2] = BPF_CORE_READ(r, regs[2]);
		return BPF_CORE_READ(r, syscallno) == nr;
	}
	return false;
}

/* Errors that are no failure: a non-blocking connect() under way, no
 * connection to accept yet, a signal. */
static __always_inline bool benign(long err)
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

/* The socket behind fd in the current process, NULL if fd is no socket.
 * Reached through pointers the verifier does not trust: each read is a
 * probe read, and bpf_get_socket_cookie() refuses the socket. */
static __always_inline struct sock *sock_of_fd(long fd)
{
	if (fd < 0 || fd > 0xfffff)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *file = 0;
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* The address a bind() or connect() asked for, from the caller's sockaddr. */
static __always_inline void sockaddr_to(const struct failed_call *c, __u8 addr[16], __u16 *port)
{
	__u16 family = c->addr[0] | (c->addr[1] << 8);

	*port = (c->addr[2] << 8) | c->addr[3];
	if (family == AF_INET6 && c->addrlen >= 24)
		__builtin_memcpy(addr, &c->addr[8], 16);
	else if (family == AF_INET && c->addrlen >= 8)
		__builtin_memcpy(addr, &c->addr[4], 4);
}

/* Send the failure of a call on a TCP socket. */
static __always_inline int send_failure(long err, const struct failed_call *c)
{
	struct sock *sk = sock_of_fd(c->fd);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct tuple t;
	read_tuple_untrusted(sk, &t);
	__u8 addr[16] = {};
	__u16 port = 0;
	if (c->syscall == SYSCALL_BIND || c->syscall == SYSCALL_CONNECT)
		sockaddr_to(c, addr, &port);
	if (c->syscall == SYSCALL_BIND)
		t.sport = port;
	else if (c->syscall == SYSCALL_CONNECT)
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

	struct entry ent = entry_now(EVENT_SYSCALL_ERROR, t.sport, -err, BPF_CORE_READ(sk, __sk_common.skc_state),
				     0, &cur);
	struct record *r = record_of_one(&ent, cookie, &t, &cur);
	if (!r)
		return 0;
	read_addrs(&sk->__sk_common, t.family, r);
	if (c->syscall == SYSCALL_BIND)
		__builtin_memcpy(r->saddr, addr, 16);
	else if (c->syscall == SYSCALL_CONNECT)
		__builtin_memcpy(r->daddr, addr, 16);
	r->cgroup = cgroup;
	r->syscall = c->syscall;
	if (c->syscall == SYSCALL_ACCEPT)
		read_listener(sk, &r->qlen, &r->qmax, &r->drops);
	send_record(r);
	return 0;
}

/* A call's exit: nothing to do unless it failed. with_addr: its second and
 * third arguments are a sockaddr and its length (bind, connect). */
static __always_inline int call_exited(struct syscall_exit_ctx *ctx, __u16 syscall, bool with_addr)
{
	long ret = ctx->ret;
	if (ret >= 0 || benign(-ret))
		return 0;
	unsigned long args[3];
	if (!call_args(ctx->nr, args))
		return 0;
	struct failed_call c = { .syscall = syscall, .fd = args[0] };
	if (with_addr) {
		/* The caller's sockaddr is still where it passed it. */
		__u32 len = args[2];
		if (len > sizeof(c.addr))
			len = sizeof(c.addr);
		if (bpf_probe_read_user(c.addr, len & 31, (void *)args[1]) == 0)
			c.addrlen = len;
	}
	return send_failure(ret, &c);
}

/* accept() and accept4() return a socket the kernel cloned from a listener
 * in softirq context, with the listener's owner: in a prefork server (nginx:
 * the master listens, workers accept) that is the wrong process. Here, once
 * per accepted connection and in the accepting process, the real owner is
 * noted by cookie; the socket's next event takes it (resolve_owner). A
 * classic tracepoint cannot reach the socket storage (the socket comes from
 * the file, an untrusted pointer), so the note goes through the cookie map. */
static __always_inline int note_accepted(long fd)
{
	struct sock *sk = sock_of_fd(fd);
	if (!sk)
		return 0;
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	struct tuple t = {};
	__u64 cookie;
	if (proto == IPPROTO_TCP) {
		/* The cookie exists: the socket's own transitions took it. */
		cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		/* Each read through these pointers is a probe read: the tuple
		 * only when a filter asks for it. */
		if (filter_netns || filter_family || filter_nports)
			read_tuple_untrusted(sk, &t);
		else
			t.family = AF_INET; /* passes tuple_filtered's family check */
	} else {
		cookie = tcp_behind_untrusted(sk, proto, &t);
	}
	if (!cookie || tuple_filtered(&t, cookie))
		return 0;
	struct owner o = {};
	owner_from_current(&o);
	bpf_map_update_elem(&accepted_owners, &cookie, &o, BPF_ANY);
	return 0;
}

/* accept() returns the new socket's fd: note its owner, or report why it
 * failed. */
static __always_inline int accept_exited(struct syscall_exit_ctx *ctx)
{
	if (ctx->ret >= 0)
		return note_accepted(ctx->ret);
	return call_exited(ctx, SYSCALL_ACCEPT, false);
}

static __always_inline int exit_connect(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx, SYSCALL_CONNECT, true);
}

static __always_inline int exit_bind(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx, SYSCALL_BIND, true);
}

static __always_inline int exit_listen(struct syscall_exit_ctx *ctx)
{
	return call_exited(ctx, SYSCALL_LISTEN, false);
}

static __always_inline int exit_accept4(struct syscall_exit_ctx *ctx)
{
	return accept_exited(ctx);
}

static __always_inline int exit_accept(struct syscall_exit_ctx *ctx)
{
	return accept_exited(ctx);
}
