#!/usr/bin/env bash
# What do the socket scans cost on a host with many network namespaces?
#
# Without --netns, tcptrace's scans (the start-up seed, the TIME_WAIT
# counts, the follow-ups of orphaned FIN_WAIT2 sockets) enter every network
# namespace of the host in turn. iter/tcp walks the whole host's TCP hash
# tables for each namespace, skipping the sockets of the others, so a full
# scan costs about namespaces x (hash buckets + sockets of the host).
#
# This makes NETNS namespaces (each held by a process, as a pod's pause
# process holds its pod's), SOCKETS TCP sockets spread over them (a listener
# and loopback connections in each), and prints, per operation, the wall
# time (ns/op) and the CPU time of the process (cpu-ns/op, user + system):
#   scan               one full scan: every namespace (Tracer.Scan)
#   follow-1-netns     a follow-up scan of the one namespace with orphans
#                      (Tracer.Follow, what runs between full scans)
#   discovery          finding the namespaces: /run/netns and /proc/*/ns/net
#   discovery-all-new  the same when every namespace is new: each is entered
#                      once to read its TCP sysctls
#   seed               the start-up scan: sockets, then owners (every
#                      process's files), then the correlator's records
# tcptrace waits 50 times a scan's cost before the next (at least 1 s).
#
# Usage:  bench/netns-scan.sh   (as root)
# Environment:
#   NETNS=100 SOCKETS=10000 RUNS=20
# It prints figures and never fails on a threshold.

set -euo pipefail
script_name=netns-scan
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NETNS=${NETNS:-100}
SOCKETS=${SOCKETS:-10000}
RUNS=${RUNS:-20}
whole_numbers NETNS SOCKETS RUNS
require_root

# Two file descriptors per connection, both in this process.
ulimit -n $((2 * SOCKETS + 1024)) 2>/dev/null || log "could not raise the open files limit to $((2 * SOCKETS + 1024))"
log "$NETNS namespaces, $SOCKETS sockets, $RUNS runs each (kernel $(uname -r), $(nproc) CPUs)"
cd "$repo"
TCPTRACE_BENCH_NETNS=$NETNS TCPTRACE_BENCH_SOCKETS=$SOCKETS \
	go test -count=1 -run '^$' -bench 'NetNSScan' -benchtime "${RUNS}x" -v ./tracer/ |
	grep -E "^(Benchmark|\s+netns_bench_test)"
