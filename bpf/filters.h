/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The load-time filters (--port, --netns, -4/-6, --pid, --comm, --cgroup,
 * --container, --pod), applied in the kernel: what they drop costs nothing
 * in user space.
 */
#ifndef TCPTRACE_FILTERS_H
#define TCPTRACE_FILTERS_H

static __always_inline bool tuple_filtered(const struct tuple *t, __u64 cookie)
{
	if (t->family != AF_INET && t->family != AF_INET6)
		return true;
	if (filter_netns && t->netns != filter_netns)
		return true;
	if (filter_family && t->family != filter_family)
		return true;
	if (filter_nports) {
		for (int i = 0; i < MAX_FILTER_PORTS; i++) {
			if (i >= filter_nports)
				break;
			if (t->sport == filter_ports[i] || t->dport == filter_ports[i]) {
				if (cookie) {
					__u8 one = 1;
					bpf_map_update_elem(&port_matched, &cookie, &one, BPF_ANY);
				}
				return false;
			}
		}
		/* Both ports known and neither matches: not ours. Only an event
		 * with a port missing (SYN_SENT before connect() picks the local
		 * port, X -> CLOSE after it is released) may belong to a
		 * connection that matched earlier: only then ask the map, so
		 * that filtered-out traffic costs no lookup. */
		if (t->sport && t->dport)
			return true;
		return !cookie || !bpf_map_lookup_elem(&port_matched, &cookie);
	}
	return false;
}

/* The cgroup v2 id of a full socket: the cgroup of the process that created
 * it (an accepted socket inherits its listener's). */
static __always_inline __u64 sk_cgroup(const struct sock *sk)
{
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;

	return cg ? cg->kn->id : 0;
}

static __always_inline bool cgroup_filter_on(void)
{
	return filter_cgroup || filter_cgroup_map;
}

/* cgroup 0: no full socket (timewait or request socket, or a RST with no
 * socket), which passes only as part of a connection that passed. */
static __always_inline bool cgroup_filtered(__u64 cgroup, __u64 cookie)
{
	if (!cgroup_filter_on())
		return false;
	if (!cgroup)
		return !cookie || !bpf_map_lookup_elem(&cgroup_matched, &cookie);
	if (filter_cgroup)
		return cgroup != filter_cgroup;
	return !bpf_map_lookup_elem(&cgroup_allow, &cgroup);
}

static __always_inline bool owner_filtered(const struct owner *o)
{
	if (!filter_pid && !filter_comm_set)
		return false;
	if (!o)
		return true; /* the owner is unknown: it cannot be shown to match */
	if (filter_pid && o->pid != filter_pid)
		return true;
	if (filter_comm_set) {
		for (int i = 0; i < COMM_LEN; i++) {
			if (o->comm[i] != filter_comm[i])
				return true;
			if (!o->comm[i])
				break;
		}
	}
	return false;
}

#endif /* TCPTRACE_FILTERS_H */
