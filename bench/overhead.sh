#!/usr/bin/env bash
# What does tracing cost a web server, under connection churn and under
# keep-alive?
#
# nginx (one worker, "return 204") is loaded by wrk in two workloads:
#   churn      "Connection: close": every request is a new TCP connection,
#              so conn/s = req/s; the worst case for a connection tracer.
#   keepalive  wrk's 32 connections carry request after request (nginx
#              closes one after KEEPALIVE_REQUESTS, 1000 by default as in
#              nginx itself, and wrk opens another): what most servers do.
#              A tracer that costs something per connection and nothing
#              per request should be nearly free here.
#   dropstorm  churn with DROPSTORM_CONNECTIONS (2048) connections and an
#              nftables rule in the namespace (a table of the bench's own,
#              deleted after) dropping half the packets towards the server
#              at random (tcp dport PORT numgen random mod 2 == 0 counter
#              drop), so clients retransmit and wrk counts timeouts (which
#              the script tolerates here): some thousands of drops a
#              second, each one kfree_skb run. Its table gives conn/s,
#              packets dropped per second (the rule's counter, read before
#              and after the load), the tracer's CPU, all BPF runs and ns,
#              and those of the handle_kfree_skb* programs, per dropped
#              packet, and the drops tcptrace counted (the sum of the JSON
#              summary's "drops") / the packets nftables dropped. It runs
#              only the configurations of CONFIGS also in DROPSTORM_CONFIGS
#              (none json before), for DROPSTORM_SECONDS (6) each, so it
#              adds about 1.3 minutes to the default run: it is in the
#              default WORKLOADS, and `make bench` takes about 9.5 minutes.
# All run on loopback inside a network namespace this script creates, with
# its own ephemeral port range and tcp_tw_reuse, so the run is neither
# throttled by TIME_WAIT nor disturbed by (or disturbing) the host's own
# sockets.
#
# Each configuration is one run of wrk under one tracer:
#   none      no tracer: the baseline
#   bpftrace  a bpftrace one-liner like tcpstates, printing every
#             sock:inet_sock_set_state transition to a file
#   json      tcptrace -o json
#   text      tcptrace -o text
#   filtered  tcptrace -o json --port 9: a port nothing uses, so the cost
#             of traffic the kernel-side filter throws away
#   before    tcptrace -o json built from BEFORE_COMMIT (766686b: main
#             before the drop (kfree_skb) and syscall-failure programs were
#             added), or the binary BEFORE_TCPTRACE names; left out, with
#             a note, when neither is there. a948ec9 (before events were
#             batched per socket and the per-I/O programs made opt-in) was
#             the earlier "before"
#   owner-io  tcptrace -o json --owner-io: what the opt-in per-I/O owner
#             programs cost
#   fleet     tcptrace -o json --only-anomalies --compact: the DaemonSet's
#             stream (deploy/; its --metrics left out), the anomalies and
#             alerts as compact records; "reported" counts only those
#   events    tcptrace --events -o json (every kernel event too); not run
#             unless named in CONFIGS
#   top       tcptrace top --headless: top's work (every event sent on its
#             own, a snapshot and a screen drawn every second) without a
#             terminal; it reports no records ("reported" is 0)
# The tracers are limited to the benchmark's namespace (tcptrace --netns,
# the same test in bpftrace's predicate) so that other work on the machine
# does not count. Configurations are interleaved round by round (A B C A B C
# ...) so drift of the machine hits all of them alike; the tables show
# medians over the rounds, and each ratio to the untraced rate is the median
# of the per-round ratios (pairing runs that were close in time).
#
# Measured for each traced run:
#   - the tracer process's CPU (utime + stime) from attached to the end of
#     the load, per connection and per request;
#   - the BPF programs the tracer holds (the prog_id of every bpf-prog and
#     bpf_link fd in /proc/PID/fdinfo): their run_cnt and run_time_ns from
#     `bpftool prog show` before and after the load, with
#     kernel.bpf_stats_enabled=1 for the whole benchmark (restored at exit).
#     These programs run in the traced tasks and on every socket of the
#     host (the namespace filter is inside them), so other work on the
#     machine adds runs. Statistics cost each program run two clock reads
#     (tens of ns), which the traced configurations pay in their rates;
#     BPF_STATS=0 measures without them (no BPF columns then);
#   - ring-buffer records: tcptrace's summary ring_records (before and
#     bpftrace: one per event), kernel events, lost events;
#   - connection records reported (client side) against client connections
#     made (ActiveOpens of the namespace's /proc/net/snmp during the load);
#   - peak RSS (VmHWM);
#   - the BPF runs and ns by program group, per connection, in a table
#     after each workload's: the syscall hooks (programs named
#     handle_exit_*, handle_accept*: one run per call of
#     connect, bind, listen, accept, accept4, whatever the bytes), the drop
#     programs (handle_kfree_skb*: one run per dropped packet of the host),
#     and the rest (the TCP tracepoints). results.json keeps every
#     program's runs and ns for every run.
#
# Tracer output goes to a file on tmpfs rather than /dev/null: the summary
# (events, records, lost events, duration) is the last line(s) of the
# output, and the connection records are counted afterwards. Writing to
# tmpfs costs about what writing to /dev/null does plus a memory copy, and
# no disk I/O.
#
# Usage:  bench/overhead.sh   (as root; or: make bench)
# Environment:
#   ROUNDS=3             rounds; each runs every configuration once
#   SECONDS_PER_RUN=8    wrk's duration for each run
#   WARMUP_SECONDS=2     an untraced run before each workload, not reported (0: none)
#   WORKLOADS="churn keepalive dropstorm"   which, in this order
#   CONFIGS="none bpftrace json text filtered before owner-io top"   which, in this order
#   DROPSTORM_CONFIGS="none json before"   dropstorm runs those of CONFIGS also named here
#   DROPSTORM_SECONDS=6  wrk's duration for each dropstorm run (SECONDS_PER_RUN if shorter)
#   DROPSTORM_CONNECTIONS=2048   wrk's connections in dropstorm
#   WRK_THREADS=1  WRK_CONNECTIONS=32  KEEPALIVE_REQUESTS=1000
#   PIN_CPUS=1           nginx on CPU 0, wrk on CPU 1 (0: wherever the scheduler puts them)
#   BEFORE_TCPTRACE=PATH the "before" binary; else built from BEFORE_COMMIT=766686b
#   BPF_STATS=1          enable kernel.bpf_stats_enabled for the run (0: leave it)
#   RESULTS_FILE=bench/results.json
#   TCPTRACE=PATH        use this binary instead of building one
#
# It prints figures, and targets beside them, and never fails on a
# threshold: it exits non-zero only when the benchmark cannot run (not root,
# a tool missing, a tracer that does not start or does not print its
# summary).
set -euo pipefail

script_name=bench # the prefix of log lines
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
WARMUP_SECONDS=${WARMUP_SECONDS:-2}
WORKLOADS=${WORKLOADS:-churn keepalive dropstorm}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
KEEPALIVE_REQUESTS=${KEEPALIVE_REQUESTS:-1000}
CONFIGS=${CONFIGS:-none bpftrace json fleet text filtered before owner-io top}
DROPSTORM_CONFIGS=${DROPSTORM_CONFIGS:-none json before}
DROPSTORM_SECONDS=${DROPSTORM_SECONDS:-} # default: below, once SECONDS_PER_RUN is checked
DROPSTORM_CONNECTIONS=${DROPSTORM_CONNECTIONS:-2048}
BEFORE_COMMIT=${BEFORE_COMMIT:-766686b}
BEFORE_TCPTRACE=${BEFORE_TCPTRACE:-}
BPF_STATS=${BPF_STATS:-1}
RESULTS_FILE=${RESULTS_FILE:-$repo/bench/results.json}
TCPTRACE=${TCPTRACE:-}
READY_TIMEOUT=${READY_TIMEOUT:-60} # s for a tracer to attach: bpftrace takes seconds
STOP_TIMEOUT=${STOP_TIMEOUT:-30}   # s for a tracer to flush and exit after SIGINT

FILTER_PORT=9 # for "filtered": not the server's port and below the ephemeral range (PORT, PORT_RANGE: lib.sh)

whole_numbers ROUNDS SECONDS_PER_RUN WARMUP_SECONDS WRK_THREADS WRK_CONNECTIONS KEEPALIVE_REQUESTS READY_TIMEOUT STOP_TIMEOUT
DROPSTORM_SECONDS=${DROPSTORM_SECONDS:-$((SECONDS_PER_RUN < 6 ? SECONDS_PER_RUN : 6))}
whole_numbers DROPSTORM_SECONDS DROPSTORM_CONNECTIONS
((ROUNDS >= 1 && SECONDS_PER_RUN >= 1 && WRK_THREADS >= 1 && WRK_CONNECTIONS >= WRK_THREADS && KEEPALIVE_REQUESTS >= 1)) ||
	die "need ROUNDS >= 1, SECONDS_PER_RUN >= 1, WRK_CONNECTIONS >= WRK_THREADS >= 1, KEEPALIVE_REQUESTS >= 1"
# 4000: nginx's worker_connections is 4096 (lib.sh).
((DROPSTORM_SECONDS >= 1 && DROPSTORM_CONNECTIONS >= WRK_THREADS && DROPSTORM_CONNECTIONS <= 4000)) ||
	die "need DROPSTORM_SECONDS >= 1, 4000 >= DROPSTORM_CONNECTIONS >= WRK_THREADS"
[[ $BPF_STATS == [01] ]] || die "BPF_STATS must be 0 or 1, got '$BPF_STATS'"
read -r -a workloads <<<"$WORKLOADS"
((${#workloads[@]})) || die "WORKLOADS is empty"
want_nft=
for w in "${workloads[@]}"; do
	case $w in
	churn | keepalive) ;;
	dropstorm) want_nft=1 ;;
	*) die "unknown workload '$w' (churn keepalive dropstorm)" ;;
	esac
done
read -r -a configs <<<"$CONFIGS"
((${#configs[@]})) || die "CONFIGS is empty"
want_bpftrace=
want_before=
for c in "${configs[@]}"; do
	case $c in
	none | json | fleet | text | filtered | owner-io | events | top) ;;
	bpftrace) want_bpftrace=1 ;;
	before) want_before=1 ;;
	*) die "unknown configuration '$c' (none bpftrace json fleet text filtered before owner-io events top)" ;;
	esac
done
for c in $DROPSTORM_CONFIGS; do
	case $c in
	none | bpftrace | json | text | filtered | before | owner-io | events | top) ;;
	*) die "unknown configuration '$c' in DROPSTORM_CONFIGS" ;;
	esac
done
require_root
# dropstorm: wrk holds DROPSTORM_CONNECTIONS sockets and nginx as many, more
# than the usual soft limit of 1024 open files; raise it (for this script
# and what it starts) if the hard limit allows.
if [[ -n $want_nft ]]; then
	nofile=$((DROPSTORM_CONNECTIONS + 256))
	if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < nofile)); then
		ulimit -Sn "$nofile" 2>/dev/null || die "dropstorm needs $nofile open files (ulimit -n), the hard limit is $(ulimit -Hn): lower DROPSTORM_CONNECTIONS"
	fi
fi

# --- Tools: installed from Debian's packages when missing ---------------------
extra_tools=()
[[ -z $want_bpftrace ]] || extra_tools+=(bpftrace)
((BPF_STATS == 0)) || extra_tools+=(bpftool)
install_tools ${extra_tools[@]+"${extra_tools[@]}"}
# nft: the nftables package.
[[ -z $want_nft ]] || command -v nft >/dev/null || {
	log "installing nftables"
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >&2
}
require_tools nginx wrk ip timeout ${extra_tools[@]+"${extra_tools[@]}"} ${want_nft:+nft}

trap_cleanup

work=$(mktemp -d /tmp/tcptrace-bench.XXXXXX)
if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
	out=$(mktemp -d /dev/shm/tcptrace-bench.XXXXXX)
else
	out=$work/out
	mkdir "$out"
	mount -t tmpfs -o mode=0700 tcptrace-bench "$out"
	mounted_out=1
fi

# bpftrace reads tracepoint formats from tracefs, which a minimal VM may not
# have mounted (tcptrace's tp_btf programs do not need it).
if [[ -n $want_bpftrace && ! -d /sys/kernel/tracing/events && ! -d /sys/kernel/debug/tracing/events ]]; then
	mount -t tracefs nodev /sys/kernel/tracing
	mounted_tracefs=1
fi

if ((BPF_STATS)); then
	old=$(sysctl -n kernel.bpf_stats_enabled)
	if [[ $old != 1 ]]; then
		sysctl -q -w kernel.bpf_stats_enabled=1
		bpf_stats_saved=$old # cleanup restores it
	fi
fi

# --- tcptrace, now and before ----------------------------------------------------
build_tcptrace

notes=() # printed with the tables and kept in the JSON
before_label=""
if [[ -n $want_before ]]; then
	if [[ -n $BEFORE_TCPTRACE ]]; then
		[[ -x $BEFORE_TCPTRACE ]] || die "BEFORE_TCPTRACE=$BEFORE_TCPTRACE is not an executable"
		before_label=$(basename "$BEFORE_TCPTRACE")
	elif git -C "$repo" cat-file -e "$BEFORE_COMMIT^{commit}" 2>/dev/null && command -v go >/dev/null; then
		log "building tcptrace at $BEFORE_COMMIT (the 'before' configuration)"
		mkdir "$work/before-src"
		if git -C "$repo" archive "$BEFORE_COMMIT" | tar -x -C "$work/before-src" &&
			(cd "$work/before-src" && go build -o "$work/tcptrace-before" .) >"$work/before-build.log" 2>&1; then
			BEFORE_TCPTRACE=$work/tcptrace-before
			before_label="tcptrace@$BEFORE_COMMIT"
		else
			notes+=("before: left out, building $BEFORE_COMMIT failed: $(tail -n 3 "$work/before-build.log" | tr '\n' ' ')")
		fi
	else
		notes+=("before: left out, commit $BEFORE_COMMIT not in $repo (or no go); set BEFORE_TCPTRACE=PATH to a build of it")
	fi
	if [[ -z $BEFORE_TCPTRACE ]]; then
		log "${notes[-1]}"
		kept=()
		for c in "${configs[@]}"; do [[ $c == before ]] || kept+=("$c"); done
		configs=("${kept[@]}")
	fi
fi

# wrk_run SECONDS WORKLOAD: load the server; the result goes to
# $out/wrk.out. wrk runs in the background and the script waits for it with
# the wait builtin, which a trapped signal interrupts at once: Ctrl-C need
# not wait for the run to end (and wrk is out of the terminal's reach: see
# start_wrk). dropstorm is churn with DROPSTORM_CONNECTIONS connections.
# wrk's socket errors, timeouts and non-2xx answers are counted in
# WRK_RESULT, never a failure (wrk exits 0 with them); under dropstorm a
# non-zero exit is tolerated too as long as wrk printed its WRK_RESULT.
wrk_run() {
	if [[ $2 == dropstorm ]]; then
		WRK_CONNECTIONS=$DROPSTORM_CONNECTIONS start_wrk "$1" "$out/wrk.out" churn
	else
		start_wrk "$1" "$out/wrk.out" "$2"
	fi
	local rc=0
	wait "$wrk_pid" || rc=$?
	wrk_pid=""
	if ((rc != 0)); then
		[[ $2 == dropstorm ]] && grep -q '^WRK_RESULT' "$out/wrk.out" ||
			die "wrk failed (exit $rc): $(cat "$out/wrk.out")"
		log "dropstorm: wrk exited $rc, its result kept"
	fi
}

# --- The drop storm: an nftables table of the bench's own in the namespace -----
NFT_TABLE=tcptrace_bench_drops
# drops_on: drop half the packets towards the server, at random, counted.
drops_on() {
	ip netns exec "$ns" nft -f - <<EOF
table inet $NFT_TABLE {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport $PORT numgen random mod 2 == 0 counter drop
	}
}
EOF
}
drops_off() { ip netns exec "$ns" nft delete table inet "$NFT_TABLE"; }
# nft_dropped: the packets the rule has dropped so far.
nft_dropped() {
	ip netns exec "$ns" nft -j list table inet "$NFT_TABLE" |
		sed -n 's/.*"counter": *{ *"packets": *\([0-9]*\).*/\1/p'
}

# --- BPF program statistics ----------------------------------------------------
# bpf_snapshot PID: "id run_cnt run_time_ns name", a line for each BPF
# program the process holds, through a program fd or a link fd (both show
# prog_id in their fdinfo).
bpf_snapshot() {
	local id j
	for id in $(grep -hs '^prog_id:' /proc/"$1"/fdinfo/* | awk '{ print $2 }' | sort -un); do
		j=$(bpftool -j prog show id "$id" 2>/dev/null) || continue # unloaded meanwhile
		printf '%s %s %s %s\n' "$id" "$(json_field run_cnt "$j")" "$(json_field run_time_ns "$j")" \
			"$(sed -n 's/.*"name":"\([^"]*\)".*/\1/p' <<<"$j")"
	done
}

# bpf_delta BEFORE AFTER: "runs ns" over the programs in AFTER, counting
# those not in BEFORE from zero, then "name:runs:ns" for each program that
# ran, most runs first.
bpf_delta() {
	# %.0f, not %d: mawk's %d stops at 2^31, and run times pass it.
	awk 'FILENAME == ARGV[1] { c[$1] = $2; t[$1] = $3; next }
	{ dr = $2 - c[$1]; dn = $3 - t[$1]; r += dr; n += dn; if (dr > 0) by[++k] = sprintf("%.0f %s:%.0f:%.0f", dr, $4, dr, dn) }
	END {
		for (i = 2; i <= k; i++) { v = by[i]; for (j = i - 1; j >= 1 && by[j] + 0 < v + 0; j--) by[j + 1] = by[j]; by[j + 1] = v }
		printf "%.0f %.0f", r, n
		for (i = 1; i <= k; i++) { sub(/^[0-9]+ /, "", by[i]); printf " %s", by[i] }
		print ""
	}' "$1" "$2"
}

# --- Tracer configurations -----------------------------------------------------
# The bpftrace program: like tcpstates, one line per state transition of a
# TCP socket (IPv4 addresses, which is all this workload has), here only in
# the benchmark's namespace. BEGIN fires once every probe is attached, and
# creates the ready file (system() needs --unsafe). READY and NETNS (the
# namespace's inode) are replaced before use.
bt_prog='BEGIN { system("touch READY"); }
tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && ((struct sock *)args->skaddr)->__sk_common.skc_net.net->ns.inum == NETNS/
{ printf("%llu %d %s %s:%d %s:%d %d->%d\n", nsecs, pid, comm,
ntop(args->saddr), args->sport, ntop(args->daddr), args->dport, args->oldstate, args->newstate); }'
bt_prog=${bt_prog//$'\n'/ } # one line: command_for prints one word a line

# command_for CONFIG READY-FILE: the tracer's command line, one word a line.
command_for() {
	local tt=("$TCPTRACE" --netns "$nspath" --ready-file "$2") bt=${bt_prog//NETNS/$ns_inode}
	case $1 in
	none) ;;
	bpftrace) printf '%s\n' bpftrace --unsafe -o "$out/tracer.out" -e "${bt//READY/$2}" ;;
	json) printf '%s\n' "${tt[@]}" -o json ;;
	text) printf '%s\n' "${tt[@]}" -o text ;;
	filtered) printf '%s\n' "${tt[@]}" -o json --port "$FILTER_PORT" ;;
	owner-io) printf '%s\n' "${tt[@]}" -o json --owner-io ;;
	fleet) printf '%s\n' "${tt[@]}" -o json --only-anomalies --compact ;;
	events) printf '%s\n' "${tt[@]}" --events -o json ;;
	top) printf '%s\n' "$TCPTRACE" top --netns "$nspath" --ready-file "$2" --headless -o json ;;
	before) printf '%s\n' "$BEFORE_TCPTRACE" --netns "$nspath" --ready-file "$2" -o json ;;
	esac
}

# The commands as the results show them, with placeholders for the
# namespace (each workload has one of its own).
nspath=/run/netns/NS ns_inode=NETNS
: >"$work/commands.tsv"
for c in "${configs[@]}"; do
	case $c in
	none) cmd="(no tracer)" ;;
	bpftrace) cmd="bpftrace --unsafe -o FILE -e '$bt_prog'" ;;
	before) cmd="$before_label $(command_for "$c" READY | tail -n +2 | tr '\n' ' ')> FILE" ;;
	*) cmd="tcptrace $(command_for "$c" READY | tail -n +2 | tr '\n' ' ')> FILE" ;;
	esac
	printf '%s\t%s\n' "$c" "${cmd% }" >>"$work/commands.tsv"
done

# Go durations as tcptrace's text summary prints them (1m2.054s, 950ms) to seconds.
go_seconds() {
	awk -v d="$1" 'BEGIN {
		s = 0
		while (match(d, /^[0-9.]+(h|ms|m|s|µs|us|ns)/)) {
			tok = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
			n = tok + 0; u = tok; sub(/^[0-9.]+/, "", u)
			s += n * (u == "h" ? 3600 : u == "m" ? 60 : u == "s" ? 1 : u == "ms" ? 1e-3 : u == "ns" ? 1e-9 : 1e-6)
		}
		printf "%.6f", s
	}'
}

# run_one WORKLOAD CONFIG ROUND: one wrk run under one tracer; appends a row
# to runs.tsv.
run_one() {
	local wl=$1 cfg=$2 round=$3
	local tout=$out/tracer.out terr=$out/tracer.err ready=$out/ready
	rm -f "$tout" "$terr" "$ready"
	local t0 t1 cmd=() cpu_ready=-
	mapfile -t cmd < <(command_for "$cfg" "$ready")
	t0=$EPOCHREALTIME
	if ((${#cmd[@]})); then
		if [[ $cfg == bpftrace ]]; then
			# Its transitions go to -o; what else it prints (warnings, the
			# blank lines it ends with) to the side file.
			"${cmd[@]}" >"$terr" 2>&1 &
		else
			"${cmd[@]}" >"$tout" 2>"$terr" &
		fi
		tracer_pid=$!
		wait_for "$READY_TIMEOUT" tracer_ready "$ready" tracer "$terr" "$tout" || die "$cfg: not attached after ${READY_TIMEOUT}s"
		# What starting cost (BTF, loading, attaching), kept apart.
		cpu_ready=$(cpu_ticks "$tracer_pid")
		if ((BPF_STATS)); then
			bpf_snapshot "$tracer_pid" >"$out/bpf.0"
		fi
	fi

	local opens0 opens1 secs=$SECONDS_PER_RUN dropped=- dropped0
	[[ $wl != dropstorm ]] || secs=$DROPSTORM_SECONDS
	[[ $wl != dropstorm ]] || dropped0=$(nft_dropped)
	opens0=$(active_opens)
	wrk_run "$secs" "$wl"
	opens1=$(active_opens)
	[[ $wl != dropstorm ]] || dropped=$(($(nft_dropped) - dropped0))
	local requests wrk_us errors conns=$((opens1 - opens0))
	read -r _ requests wrk_us errors < <(grep '^WRK_RESULT' "$out/wrk.out") ||
		die "no result from wrk: $(cat "$out/wrk.out")"

	local cpu_end=- rss_kib=- tracer_s=- events=- records=- lost=- reported=- bpf_runs=- bpf_ns=- bpf_progs=- counted=- nf_counted=- drops_by=-
	local dropped_traced=$dropped # dropstorm: the rule's drops from before the load to the tracer's exit
	if [[ -n $tracer_pid ]]; then
		# The tracer's own cost so far, read before it is stopped: CPU time
		# (utime + stime), peak resident memory, and its BPF programs' runs
		# (in the traced tasks' context: they show in the rate too).
		exited "$tracer_pid" && die "$cfg: the tracer exited during the run: $(tail -n 20 "$terr")"
		if ((BPF_STATS)); then
			bpf_snapshot "$tracer_pid" >"$out/bpf.1"
			read -r bpf_runs bpf_ns bpf_progs < <(bpf_delta "$out/bpf.0" "$out/bpf.1")
		fi
		cpu_end=$(cpu_ticks "$tracer_pid")
		rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$tracer_pid/status")
		stop "$tracer_pid" INT
		tracer_pid=""
		t1=$EPOCHREALTIME
		[[ $wl != dropstorm ]] || dropped_traced=$(($(nft_dropped) - dropped0))

		case $cfg in
		bpftrace)
			# Transition lines start with the timestamp; "Lost N events"
			# goes to the output or to stderr. Client connections seen:
			# CLOSE -> SYN_SENT transitions. A record per event.
			events=$(grep -c '^[0-9]' "$tout" || true)
			records=$events
			lost=$(cat "$tout" "$terr" | awk '/^Lost [0-9]+ events/ { n += $2 } END { print n + 0 }')
			reported=$(grep -c ' 7->2$' "$tout" || true)
			tracer_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
			;;
		text)
			local l1 l2
			l1=$(grep '^--- [0-9]* connections in ' "$tout" | tail -n 1 || true)
			l2=$(grep '^--- events ' "$tout" | tail -n 1 || true)
			# "--- 3 connections in 2.054s: closed=3"
			# "--- events 12, lost 0, evicted 0, recursion misses 0, ring-buffer records 4"
			local re1='^--- [0-9]+ connections in ([^:]+):' re2='^--- events ([0-9]+), lost ([0-9]+),' re3='ring-buffer records ([0-9]+)'
			[[ $l1 =~ $re1 ]] || die "$cfg: no summary in the output: $(tail -n 5 "$terr")"
			tracer_s=$(go_seconds "${BASH_REMATCH[1]}")
			[[ $l2 =~ $re2 ]] || die "$cfg: no event summary in the output: $(tail -n 5 "$terr")"
			events=${BASH_REMATCH[1]} lost=${BASH_REMATCH[2]}
			records=$events
			[[ $l2 =~ $re3 ]] && records=${BASH_REMATCH[1]}
			# Record headers: "HH:MM:SS.mmm comm[pid] laddr → raddr client ..."
			# (with the peer's owner after the remote end when both are here)
			reported=$(grep -cE '^[0-9][0-9:.]* .* → [^ ]*( [^ ]+\[[0-9]+\])? client ' "$tout" || true)
			;;
		*)
			local sum
			sum=$(tail -n 1 "$tout")
			is_json_summary "$sum" || die "$cfg: no summary in the output: $(tail -n 5 "$terr")"
			tracer_s=$(awk -v ms="$(json_field duration_ms "$sum")" 'BEGIN { printf "%.6f", ms / 1000 }')
			events=$(json_field events "$sum")
			records=$(json_field ring_records "$sum")
			[[ -n $records ]] || records=$events # before batching: a record per event
			lost=$(json_field lost_events "$sum")
			reported=$(grep -c '"type":"connection".*"role":"client"' "$tout" || true)
			# The drops tcptrace counted, by reason: the summary's first
			# "drops" object (builds before drops have none).
			drops_by=$(grep -o '"drops":{[^}]*}' <<<"$sum" | head -n 1 | sed 's/^"drops"://' || true)
			if [[ -n $drops_by ]]; then
				counted=$(awk '{ n = 0; while (match($0, /:[0-9]+/)) { n += substr($0, RSTART + 1, RLENGTH - 1); $0 = substr($0, RSTART + RLENGTH) } printf "%.0f\n", n }' <<<"$drops_by")
				nf_counted=$(json_field NETFILTER_DROP "$drops_by")
				nf_counted=${nf_counted:-0}
			else
				drops_by=-
			fi
			;;
		esac
	fi
	printf '%s\t' "$wl" "$cfg" "$round" "$requests" "$wrk_us" "$errors" "$conns" "$events" "$records" "$tracer_s" \
		"$lost" "$cpu_end" "$cpu_ready" "$rss_kib" "$reported" "$(du -sk "$tout" 2>/dev/null | cut -f1)" "$bpf_runs" \
		"$bpf_ns" "$dropped" "$dropped_traced" "$counted" "$nf_counted" "$drops_by" >>"$work/runs.tsv"
	printf '%s\n' "${bpf_progs:--}" >>"$work/runs.tsv"
	local storm=""
	[[ $wl != dropstorm ]] || storm="  dropped $dropped (traced $dropped_traced)  counted $counted (NETFILTER_DROP $nf_counted)"
	log "$(printf '%-9s round %d/%d %-8s %7.0f req/s %6d conns  records %s  events %s  lost %s  reported %s%s  BPF runs %s: %s' \
		"$wl" "$round" "$ROUNDS" "$cfg" "$(awk -v r="$requests" -v u="$wrk_us" 'BEGIN { print r / (u / 1e6) }')" \
		"$conns" "$records" "$events" "$lost" "$reported" "$storm" "$bpf_runs" "${bpf_progs:--}")"
	rm -f "$tout" "$terr" "$ready" # --events output is large
}

load_now() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load_now)
# The configurations dropstorm runs: those of CONFIGS also in DROPSTORM_CONFIGS.
storm_configs=()
for c in "${configs[@]}"; do
	[[ " $DROPSTORM_CONFIGS " != *" $c "* ]] || storm_configs+=("$c")
done
log "workloads ${workloads[*]}; $ROUNDS rounds x ${#configs[@]} configurations x ${SECONDS_PER_RUN}s;" \
	"${want_nft:+(dropstorm: ${#storm_configs[@]} x ${DROPSTORM_SECONDS}s) }load average $load_start"
: >"$work/runs.tsv"
for wl in "${workloads[@]}"; do
	wl_configs=("${configs[@]}")
	if [[ $wl == dropstorm ]]; then
		if ((${#storm_configs[@]} == 0)); then
			notes+=("dropstorm: left out, none of CONFIGS is in DROPSTORM_CONFIGS ($DROPSTORM_CONFIGS)")
			log "${notes[-1]}"
			continue
		fi
		wl_configs=("${storm_configs[@]}")
	fi
	# A namespace and an nginx of its own for each workload, so that one
	# does not inherit the other's sockets (the churn leaves some 10^5 in
	# TIME_WAIT, which tcptrace's socket scans would walk).
	stop_workload
	start_workload "tcptrace-$wl"
	log "$wl: namespace $ns (inode $ns_inode), nginx on 127.0.0.1:$PORT"
	if [[ $wl == dropstorm ]]; then
		drops_on
		log "dropstorm: nftables table inet $NFT_TABLE drops half the packets to port $PORT"
	fi
	if ((WARMUP_SECONDS > 0)); then
		log "$wl warm-up: ${WARMUP_SECONDS}s untraced"
		wrk_run "$WARMUP_SECONDS" "$wl"
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		for c in "${wl_configs[@]}"; do
			run_one "$wl" "$c" "$r"
		done
	done
	[[ $wl != dropstorm ]] || drops_off
done
load_end=$(load_now)

# --- Report --------------------------------------------------------------------
# Per workload and configuration, medians over the rounds. "vs none" is the
# median of the per-round ratios to the untraced run of the same round. lost
# is the total over all rounds: one lossy round matters.
mkdir -p "$(dirname "$RESULTS_FILE")"
printf '%s\n' "${notes[@]+"${notes[@]}"}" >"$work/notes.txt"
awk -F'\t' -v rounds="$ROUNDS" -v secs="$SECONDS_PER_RUN" -v clk="$clk_tck" \
	-v threads="$WRK_THREADS" -v wconns="$WRK_CONNECTIONS" -v karq="$KEEPALIVE_REQUESTS" -v bpfstats="$BPF_STATS" \
	-v storm_secs="$DROPSTORM_SECONDS" -v storm_conns="$DROPSTORM_CONNECTIONS" -v port="$PORT" \
	-v kernel="$(uname -r)" -v cpus="$(nproc)" -v date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-v pinned="$(pinned_to 0 | tr '\n' ' ')" -v load_start="$load_start" -v load_end="$load_end" -v notesfile="$work/notes.txt" \
	-v commit="$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" \
	-v results="$RESULTS_FILE" -v outdir="$(dirname "$out")" '
function median(list,    a, n, i, j, t) {
	n = split(list, a, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++) {           # insertion sort: mawk has no asort
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) { vals[k] = vals[k] (vals[k] == "" ? "" : " ") v }
function esc(s) { gsub(/\\/, "\\\\\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, "\\t", s); return s }
function num(v, fmt) { return v == "" ? "null" : sprintf(fmt, v) }
function cell(v, fmt) { return v == "" ? "-" : sprintf(fmt, v) }
function div(a, b) { return b > 0 ? a / b : "" }
# m(KEY): the median of a measure of the current workload and configuration.
function m(k) { return median(vals[wl, cfg, k]) }
# extra_medians(): the medians by BPF program group and, in dropstorm, per
# dropped packet, as JSON fields (a leading comma each).
function extra_medians() {
	return sprintf(",\"syscall_bpf_runs_per_conn\":%s,\"syscall_bpf_ns_per_conn\":%s,\"kfree_skb_bpf_runs_per_conn\":%s,\"kfree_skb_bpf_ns_per_conn\":%s,\"tcp_bpf_runs_per_conn\":%s,\"tcp_bpf_ns_per_conn\":%s",
		num(m("sys_runs_conn"), "%.3f"), num(m("sys_ns_conn"), "%.1f"), num(m("kfree_runs_conn"), "%.4f"), num(m("kfree_ns_conn"), "%.1f"),
		num(m("tcp_runs_conn"), "%.3f"), num(m("tcp_ns_conn"), "%.1f")) \
		(wl != "dropstorm" ? "" : sprintf(",\"nft_dropped_per_s\":%s,\"tracer_cpu_us_per_drop\":%s,\"bpf_runs_per_drop\":%s,\"bpf_ns_per_drop\":%s,\"kfree_skb_bpf_runs_per_drop\":%s,\"kfree_skb_bpf_ns_per_drop\":%s,\"drops_counted_per_dropped\":%s,\"netfilter_drops_counted_per_dropped\":%s",
			num(m("dps"), "%.1f"), num(m("cpu_drop"), "%.3f"), num(m("bpf_runs_drop"), "%.3f"), num(m("bpf_ns_drop"), "%.1f"),
			num(m("kfree_runs_drop"), "%.3f"), num(m("kfree_ns_drop"), "%.1f"), num(m("counted"), "%.4f"), num(m("nf_counted"), "%.4f")))
}
# target(LABEL, VALUE, OP, LIMIT, FMT): "label: value (met|MISSED)", JSON too.
function target(label, v, op, lim, fmt,    ok, s) {
	if (v == "") { s = label ": -"; tj = tj (tj == "" ? "" : ",") sprintf("{\"target\":\"%s\",\"value\":null,\"met\":null}", esc(label)); return s }
	ok = op == "<=" ? v <= lim : v >= lim
	tj = tj (tj == "" ? "" : ",") sprintf("{\"target\":\"%s\",\"value\":%s,\"met\":%s}", esc(label), sprintf(fmt, v), ok ? "true" : "false")
	return sprintf("%s: " fmt " (%s)", label, v, ok ? "met" : "MISSED")
}
BEGIN { groups["sys"]; groups["kfree"]; groups["tcp"] }
FILENAME == ARGV[1] { command[$1] = $2; cmdorder[++ncmd] = $1; next } # commands.tsv
{
	wl = $1; cfg = $2; round = $3
	if (!(wl in wseen)) { wseen[wl] = 1; worder[++nwl] = wl }
	if (!((wl, cfg) in seen)) { seen[wl, cfg] = 1; order[wl, ++ncfg[wl]] = cfg }
	req = $4; wsec = $5 / 1e6; conns = $7
	rps = req / wsec
	dropped = $19 == "-" ? "" : $19 + 0 # dropstorm: packets the nftables rule dropped during the load
	rate[wl, cfg, round] = dropped == "" ? rps : conns / wsec # dropstorm: conn/s
	add(wl SUBSEP cfg SUBSEP "rps", rps)
	add(wl SUBSEP cfg SUBSEP "cps", conns / wsec)
	add(wl SUBSEP cfg SUBSEP "conns", conns)
	run = sprintf("{\"round\":%.0f,\"requests\":%.0f,\"connections\":%.0f,\"wrk_seconds\":%.3f,\"wrk_errors\":%.0f,\"req_per_s\":%.1f,\"conn_per_s\":%.1f", round, req, conns, wsec, $6, rps, conns / wsec)
	if (dropped != "") {
		add(wl SUBSEP cfg SUBSEP "dps", dropped / wsec)
		run = run sprintf(",\"nft_dropped\":%.0f,\"nft_dropped_per_s\":%.1f", dropped, dropped / wsec)
	}
	if ($8 != "-") {
		traced[wl, cfg] = 1
		cpu_s = $12 / clk; start_s = $13 / clk; run_cpu = cpu_s - start_s
		add(wl SUBSEP cfg SUBSEP "cpu_conn", div(run_cpu * 1e6, conns))
		add(wl SUBSEP cfg SUBSEP "cpu_req", run_cpu * 1e6 / req)
		add(wl SUBSEP cfg SUBSEP "rec_conn", div($9, conns))
		add(wl SUBSEP cfg SUBSEP "rec_req", $9 / req)
		add(wl SUBSEP cfg SUBSEP "ev_conn", div($8, conns))
		add(wl SUBSEP cfg SUBSEP "rss", $14 / 1024)
		add(wl SUBSEP cfg SUBSEP "rep", div($15, conns))
		add(wl SUBSEP cfg SUBSEP "out_conn", div($16 * 1024, conns))
		lost[wl, cfg] += $11
		run = run sprintf(",\"tracer_seconds\":%.3f,\"events\":%.0f,\"ring_records\":%.0f,\"lost_events\":%.0f,\"tracer_cpu_seconds\":%.2f,\"tracer_cpu_seconds_to_attach\":%.2f,\"tracer_cpu_us_per_conn\":%s,\"tracer_cpu_us_per_request\":%.4f,\"peak_rss_kib\":%.0f,\"client_connections_reported\":%.0f,\"output_kib\":%.0f",
			$10, $8, $9, $11, cpu_s, start_s, num(div(run_cpu * 1e6, conns), "%.3f"), run_cpu * 1e6 / req, $14, $15, $16)
		if (dropped != "") add(wl SUBSEP cfg SUBSEP "cpu_drop", div(run_cpu * 1e6, dropped))
		if ($21 != "-") {
			# The drops tcptrace counted (its JSON summary), by reason,
			# against the drops of the rule while the tracer ran ($20).
			if (dropped != "") {
				add(wl SUBSEP cfg SUBSEP "counted", div($21, $20))
				add(wl SUBSEP cfg SUBSEP "nf_counted", div($22, $20))
			}
			run = run sprintf(",\"nft_dropped_while_traced\":%.0f,\"drops_counted\":%.0f,\"drops\":%s", $20, $21, $23)
		}
		if ($17 != "-") {
			add(wl SUBSEP cfg SUBSEP "bpf_runs_req", $17 / req)
			add(wl SUBSEP cfg SUBSEP "bpf_runs_conn", div($17, conns))
			add(wl SUBSEP cfg SUBSEP "bpf_ns_req", $18 / req)
			add(wl SUBSEP cfg SUBSEP "bpf_ns_conn", div($18, conns))
			add(wl SUBSEP cfg SUBSEP "bpf_ns_run", div($18, $17))
			# By group: the syscall hooks, the drop programs, the rest (the
			# TCP tracepoints). bpftool shows names cut to 15 characters.
			bp = ""; np = split($24, progs, " ")
			delete gr; delete gn; sr = 0; sn = 0
			for (p = 1; p <= np; p++) {
				split(progs[p], f, ":")
				bp = bp (p > 1 ? "," : "") sprintf("{\"name\":\"%s\",\"runs\":%.0f,\"run_time_ns\":%.0f}", esc(f[1]), f[2], f[3])
				g = f[1] ~ /^handle_(enter|exit)_/ || f[1] ~ /^handle_accept/ ? "sys" : f[1] ~ /^handle_kfree_s/ ? "kfree" : "tcp"
				gr[g] += f[2]; gn[g] += f[3]
				if (f[1] == "handle_set_state") { sr += f[2]; sn += f[3] }
			}
			add(wl SUBSEP cfg SUBSEP "state_ns_run", div(sn, sr))
			for (g in groups) {
				add(wl SUBSEP cfg SUBSEP g "_runs_conn", div(gr[g] + 0, conns))
				add(wl SUBSEP cfg SUBSEP g "_ns_conn", div(gn[g] + 0, conns))
			}
			if (dropped != "") {
				add(wl SUBSEP cfg SUBSEP "bpf_runs_drop", div($17, dropped))
				add(wl SUBSEP cfg SUBSEP "bpf_ns_drop", div($18, dropped))
				add(wl SUBSEP cfg SUBSEP "kfree_runs_drop", div(gr["kfree"] + 0, dropped))
				add(wl SUBSEP cfg SUBSEP "kfree_ns_drop", div(gn["kfree"] + 0, dropped))
			}
			run = run sprintf(",\"bpf_runs\":%.0f,\"bpf_run_time_ns\":%.0f,\"bpf_programs\":[%s],\"bpf_by_group\":{\"syscalls\":{\"runs\":%.0f,\"run_time_ns\":%.0f},\"kfree_skb\":{\"runs\":%.0f,\"run_time_ns\":%.0f},\"tcp\":{\"runs\":%.0f,\"run_time_ns\":%.0f}}",
				$17, $18, bp, gr["sys"], gn["sys"], gr["kfree"], gn["kfree"], gr["tcp"], gn["tcp"])
			bpfseen[wl] = 1
		}
	}
	runs[wl, cfg] = runs[wl, cfg] (runs[wl, cfg] == "" ? "" : ",") run "}"
}
END {
	json = sprintf("{\"date\":\"%s\",\"commit\":\"%s\",\"kernel\":\"%s\",\"cpus\":%d,\"load_average_start\":\"%s\",\"load_average_end\":\"%s\",\"rounds\":%d,\"seconds_per_run\":%d,\"bpf_stats\":%s,\"server\":\"nginx, 1 worker, return 204, keepalive_requests %d, in its own network namespace\",\"pinned\":%s,\"tracer_output\":\"a file on tmpfs (under %s), read after each run\",\"notes\":[",
		date, commit, kernel, cpus, load_start, load_end, rounds, secs, bpfstats ? "true" : "false", karq, pinned != "" ? "true" : "false", esc(outdir))
	nn = 0
	while ((getline line < notesfile) > 0) if (line != "") { json = json (nn++ ? "," : "") "\"" esc(line) "\""; notes[nn] = line }
	json = json "],\"workloads\":["
	for (w = 1; w <= nwl; w++) {
		wl = worder[w]
		ka = wl == "keepalive"; storm = wl == "dropstorm"
		for (i = 1; i <= ncfg[wl]; i++) {
			cfg = order[wl, i]
			for (r = 1; r <= rounds; r++)
				if ((wl, "none", r) in rate && (wl, cfg, r) in rate) add(wl SUBSEP cfg SUBSEP "ratio", rate[wl, cfg, r] / rate[wl, "none", r])
		}
		print ""
		if (storm) {
			printf "drop storm: wrk -t%d -c%d, Connection: close, %ds runs; nftables drops half the packets to port %d at random\n", threads, storm_conns, storm_secs, port
			hdr = sprintf("%-9s %7s %7s %8s %11s %13s %11s %15s %13s %15s %10s %6s %9s",
				"config", "conn/s", "vs none", "drops/s", "CPU us/drop", "BPF runs/drop", "BPF ns/drop", "kfree runs/drop", "kfree ns/drop",
				"counted/dropped", "NF/dropped", "lost", "peak RSS")
		} else if (ka) {
			printf "keep-alive: wrk -t%d -c%d, connections reused (nginx keepalive_requests %d)\n", threads, wconns, karq
			hdr = sprintf("%-9s %7s %7s %6s %10s %11s %12s %10s %11s %8s %7s %6s %9s %8s",
				"config", "req/s", "vs none", "conns", "CPU us/req", "CPU us/conn", "BPF runs/req", "BPF ns/req", "BPF ns/conn", "rec/req", "ev/conn", "lost", "peak RSS", "reported")
		} else {
			printf "churn: wrk -t%d -c%d, Connection: close (1 request = 1 connection, so per request = per connection)\n", threads, wconns
			hdr = sprintf("%-9s %7s %7s %11s %13s %11s %8s %7s %6s %9s %8s %10s",
				"config", "conn/s", "vs none", "CPU us/conn", "BPF runs/conn", "BPF ns/conn", "rec/conn", "ev/conn", "lost", "peak RSS", "reported", "out B/conn")
		}
		line = hdr; gsub(/./, "-", line)
		gsub(/ us\//, " µs/", hdr)
		print hdr; print line
		json = json (w > 1 ? "," : "") sprintf("{\"name\":\"%s\",\"wrk\":{\"threads\":%d,\"connections\":%d,\"header\":%s,\"seconds\":%d}%s,\"configs\":[",
			wl, threads, storm ? storm_conns : wconns, ka ? "null" : "\"Connection: close\"", storm ? storm_secs : secs,
			storm ? sprintf(",\"nftables\":\"tcp dport %d numgen random mod 2 == 0 counter drop (input)\"", port) : "")
		for (i = 1; i <= ncfg[wl]; i++) {
			cfg = order[wl, i]
			tr = (wl, cfg) in traced
			L = tr ? lost[wl, cfg] + 0 : ""
			rep = m("rep"); rep = rep == "" ? "" : rep * 100
			cnt = m("counted"); cnt = cnt == "" ? "" : cnt * 100
			nfc = m("nf_counted"); nfc = nfc == "" ? "" : nfc * 100
			if (storm)
				printf "%-9s %7.0f %7s %8.0f %11s %13s %11s %15s %13s %15s %10s %6s %9s\n", cfg, m("cps"), cell(m("ratio"), "%.3f"), m("dps"),
					cell(m("cpu_drop"), "%.2f"), cell(m("bpf_runs_drop"), "%.2f"), cell(m("bpf_ns_drop"), "%.0f"),
					cell(m("kfree_runs_drop"), "%.2f"), cell(m("kfree_ns_drop"), "%.0f"), cell(cnt, "%.1f%%"), cell(nfc, "%.1f%%"),
					cell(L, "%d"), cell(m("rss"), "%.1f MiB")
			else if (ka)
				printf "%-9s %7.0f %7s %6s %10s %11s %12s %10s %11s %8s %7s %6s %9s %8s\n", cfg, m("rps"), cell(m("ratio"), "%.3f"),
					cell(m("conns"), "%d"), cell(m("cpu_req"), "%.3f"), cell(m("cpu_conn"), "%.1f"), cell(m("bpf_runs_req"), "%.4f"),
					cell(m("bpf_ns_req"), "%.1f"), cell(m("bpf_ns_conn"), "%.0f"), cell(m("rec_req"), "%.4f"), cell(m("ev_conn"), "%.2f"),
					cell(L, "%d"), cell(m("rss"), "%.1f MiB"), cell(rep, "%.1f%%")
			else
				printf "%-9s %7.0f %7s %11s %13s %11s %8s %7s %6s %9s %8s %10s\n", cfg, m("rps"), cell(m("ratio"), "%.3f"),
					cell(m("cpu_conn"), "%.2f"), cell(m("bpf_runs_conn"), "%.2f"), cell(m("bpf_ns_conn"), "%.0f"),
					cell(m("rec_conn"), "%.2f"), cell(m("ev_conn"), "%.2f"), cell(L, "%d"), cell(m("rss"), "%.1f MiB"), cell(rep, "%.1f%%"),
					cell(m("out_conn"), "%.0f")
			json = json (i > 1 ? "," : "") sprintf("{\"name\":\"%s\",\"command\":\"%s\",\"median\":{\"req_per_s\":%s,\"conn_per_s\":%s,\"connections\":%s,\"ratio_to_none\":%s,\"tracer_cpu_us_per_conn\":%s,\"tracer_cpu_us_per_request\":%s,\"bpf_runs_per_request\":%s,\"bpf_runs_per_conn\":%s,\"bpf_ns_per_request\":%s,\"bpf_ns_per_conn\":%s,\"bpf_ns_per_run\":%s,\"ring_records_per_conn\":%s,\"ring_records_per_request\":%s,\"events_per_conn\":%s,\"peak_rss_mib\":%s,\"reported_per_conn\":%s,\"output_bytes_per_conn\":%s%s},\"lost_events_total\":%s,\"runs\":[%s]}",
				cfg, esc(command[cfg]), num(m("rps"), "%.1f"), num(m("cps"), "%.1f"), num(m("conns"), "%d"), num(m("ratio"), "%.4f"),
				num(m("cpu_conn"), "%.3f"), num(m("cpu_req"), "%.4f"), num(m("bpf_runs_req"), "%.5f"), num(m("bpf_runs_conn"), "%.3f"),
				num(m("bpf_ns_req"), "%.2f"), num(m("bpf_ns_conn"), "%.1f"), num(m("bpf_ns_run"), "%.1f"), num(m("rec_conn"), "%.4f"),
				num(m("rec_req"), "%.5f"), num(m("ev_conn"), "%.3f"), num(m("rss"), "%.1f"), num(rep == "" ? "" : rep / 100, "%.4f"),
				num(m("out_conn"), "%.0f"), extra_medians(), tr ? L : "null", runs[wl, cfg])
		}
		# The BPF programs by group, per connection.
		if (wl in bpfseen) {
			printf "BPF by program group, per connection: syscalls = handle_exit_*, handle_accept* (a run per call);\n"
			printf "kfree_skb = handle_kfree_skb* (a run per dropped packet of the host); TCP = the rest\n"
			hdr = sprintf("%-9s %13s %12s %11s %11s %10s %9s %9s %8s", "config", "syscall runs", "syscall ns", "ns/syscall",
				"kfree runs", "kfree ns", "TCP runs", "TCP ns", "ns/run")
			line = hdr; gsub(/./, "-", line)
			print hdr; print line
			for (i = 1; i <= ncfg[wl]; i++) {
				cfg = order[wl, i]
				if (m("sys_runs_conn") == "") continue
				printf "%-9s %13.2f %12.0f %11s %11.3f %10.1f %9.2f %9.0f %8s\n", cfg, m("sys_runs_conn"), m("sys_ns_conn"),
					cell(div(m("sys_ns_conn"), m("sys_runs_conn")), "%.0f"), m("kfree_runs_conn"), m("kfree_ns_conn"),
					m("tcp_runs_conn"), m("tcp_ns_conn"), cell(m("bpf_ns_run"), "%.0f")
			}
		}
		# Targets, for the default tcptrace (json) and the filtered one.
		tj = ""; lost_tt = ""
		for (i = 1; i <= ncfg[wl]; i++) {
			cfg = order[wl, i]
			if (cfg != "none" && cfg != "bpftrace" && cfg != "before" && (wl, cfg) in traced) lost_tt += lost[wl, cfg]
		}
		cfg = "json"
		if (storm) {
			t = target("json NETFILTER_DROP counted / dropped >= 0.95", m("nf_counted"), ">=", 0.95, "%.3f") "; " \
				target("lost (tcptrace) = 0", lost_tt, "<=", 0, "%d")
		} else if (ka) {
			t = target("json BPF runs/req <= 0.011", m("bpf_runs_req"), "<=", 0.011, "%.4f") "; " \
				target("json BPF ns/req <= 20", m("bpf_ns_req"), "<=", 20, "%.1f") "; " \
				target("json vs none >= 0.97", m("ratio"), ">=", 0.97, "%.3f") "; " \
				target("lost (tcptrace) = 0", lost_tt, "<=", 0, "%d")
		} else {
			t = target("json vs none >= 0.93", m("ratio"), ">=", 0.93, "%.3f") "; "
			cfg = "filtered"
			t = t target("filtered vs none >= 0.98", m("ratio"), ">=", 0.98, "%.3f") "; "
			cfg = "json"
			t = t target("lost (tcptrace) = 0", lost_tt, "<=", 0, "%d") "; " \
				target("json loader CPU <= 3 us/conn", m("cpu_conn"), "<=", 3, "%.2f") "; " \
				target("json BPF <= 3000 ns/conn", m("bpf_ns_conn"), "<=", 3000, "%.0f") "; " \
				target("json BPF <= 300 ns/state-change run", m("state_ns_run"), "<=", 300, "%.0f")
		}
		gsub(/<=/, "≤", t); gsub(/>=/, "≥", t); gsub(/ us\//, " µs/", t)
		print "targets (informative): " t
		json = json "],\"targets\":[" tj "]}"
	}
	print json "]}" > results
	printf "\nMedians of %d rounds of %ds, interleaved; load average %s at the start, %s at the end, on %d CPUs%s.\n", rounds, secs, load_start, load_end, cpus, pinned != "" ? " (nginx pinned to CPU 0, wrk to CPU 1)" : ""
	print "vs none: median of per-round ratios to the untraced run. conns: client connections made in a run (ActiveOpens)."
	print "CPU: the tracer process (utime+stime) from attached to the end of the load. BPF: run_cnt and run_time_ns of the"
	print "tracer'"'"'s programs over the load (kernel.bpf_stats_enabled; they run on every socket of the host, the namespace"
	print "filter is inside them). rec: ring-buffer records (tcptrace: ring_records; before, bpftrace: one per event)."
	print "ev: kernel events. lost: total over all rounds. peak RSS: VmHWM. reported: client connection records"
	print "(bpftrace: SYN_SENT transitions) / client connections made. Tracer output went to a tmpfs file; out B/conn: its"
	print "size / connections made (churn): what a log collector ships, B/s per 1,000 connections/s = out B/conn × 1000."
	if ("dropstorm" in wseen) {
		print "drop storm: conn/s: connections made (ActiveOpens) a second; vs none: of conn/s. drops/s: the nftables rule'"'"'s"
		print "counter over the load. Per drop: the tracer'"'"'s CPU, all its BPF programs and the handle_kfree_skb* ones, over the"
		print "packets the rule dropped during the load. counted/dropped: the sum of tcptrace'"'"'s JSON summary \"drops\" (all"
		print "reasons: the retransmissions bring TCP_OLD_DATA and others) / the packets the rule dropped from the load'"'"'s start to the"
		print "tracer'"'"'s exit; NF/dropped: its NETFILTER_DROP alone / the same packets. The two windows differ a little: the"
		print "rule keeps dropping after the load (RSTs answering SYN-ACKs nginx retransmits to connections wrk left half-open)."
	}
	for (i = 1; i <= nn; i++) print "note: " notes[i]
	for (i = 1; i <= ncmd; i++) printf "  %-9s %s\n", cmdorder[i], command[cmdorder[i]]
}' "$work/commands.tsv" "$work/runs.tsv"
log "results written to $RESULTS_FILE"
