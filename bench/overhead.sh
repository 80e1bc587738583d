#!/usr/bin/env bash
# What does tracing cost a connection-heavy workload?
#
# nginx (one worker, "return 204") is loaded by wrk with "Connection: close",
# so every request is a new TCP connection and conn/s = requests/s. Both run
# on loopback inside a network namespace this script creates, with its own
# ephemeral port range and tcp_tw_reuse, so the run is neither throttled by
# TIME_WAIT nor disturbed by (or disturbing) the host's own sockets.
#
# Each configuration is one run of wrk under one tracer:
#   none      no tracer: the baseline
#   bpftrace  a bpftrace one-liner like tcpstates, printing every
#             sock:inet_sock_set_state transition to a file
#   text      tcptrace -o text
#   json      tcptrace -o json
#   events    tcptrace --events -o json (every kernel event too)
#   filtered  tcptrace -o json --port 9: a port nothing uses, so the cost
#             of traffic the kernel-side filter throws away
# The tracers are limited to the benchmark's namespace (tcptrace --netns,
# the same test in bpftrace's predicate) so that other work on the machine
# does not count. Configurations are interleaved round by round (A B C A B C
# ...) so drift of the machine hits all of them alike; the table shows
# medians over the rounds.
#
# Tracer output goes to a file on tmpfs rather than /dev/null: the summary
# (events, lost events, duration) is the last line(s) of the output, and the
# connection records are counted afterwards. Writing to tmpfs costs about
# what writing to /dev/null does plus a memory copy, and no disk I/O.
#
# Usage:  bench/overhead.sh   (as root; or: make bench)
# Environment:
#   ROUNDS=3             rounds; each runs every configuration once
#   SECONDS_PER_RUN=8    wrk's duration for each run
#   WARMUP_SECONDS=2     an untraced run before the first round, not reported (0: none)
#   WRK_THREADS=1  WRK_CONNECTIONS=32
#   CONFIGS="none bpftrace text json events filtered"   which, in this order
#   RESULTS_FILE=bench/results.json
#   TCPTRACE=PATH        use this binary instead of building one
#
# It prints figures and never fails on a threshold: it exits non-zero only
# when the benchmark cannot run (not root, a tool missing, a tracer that
# does not start or does not print its summary).
set -euo pipefail

script_name=bench # the prefix of log lines
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
WARMUP_SECONDS=${WARMUP_SECONDS:-2}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
CONFIGS=${CONFIGS:-none bpftrace text json events filtered}
RESULTS_FILE=${RESULTS_FILE:-$repo/bench/results.json}
TCPTRACE=${TCPTRACE:-}
READY_TIMEOUT=${READY_TIMEOUT:-60} # s for a tracer to attach: bpftrace takes seconds
STOP_TIMEOUT=${STOP_TIMEOUT:-30}   # s for a tracer to flush and exit after SIGINT

FILTER_PORT=9 # for "filtered": not the server's port and below the ephemeral range (PORT, PORT_RANGE: lib.sh)

whole_numbers ROUNDS SECONDS_PER_RUN WARMUP_SECONDS WRK_THREADS WRK_CONNECTIONS READY_TIMEOUT STOP_TIMEOUT
((ROUNDS >= 1 && SECONDS_PER_RUN >= 1 && WRK_THREADS >= 1 && WRK_CONNECTIONS >= WRK_THREADS)) ||
	die "need ROUNDS >= 1, SECONDS_PER_RUN >= 1, WRK_CONNECTIONS >= WRK_THREADS >= 1"
read -r -a configs <<<"$CONFIGS"
((${#configs[@]})) || die "CONFIGS is empty"
want_bpftrace=
for c in "${configs[@]}"; do
	case $c in
	none | text | json | events | filtered) ;;
	bpftrace) want_bpftrace=1 ;;
	*) die "unknown configuration '$c' (none bpftrace text json events filtered)" ;;
	esac
done
require_root

# --- Tools: installed from Debian's packages when missing ---------------------
install_tools ${want_bpftrace:+bpftrace}
require_tools nginx wrk ip ss timeout

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

# --- tcptrace ------------------------------------------------------------------
build_tcptrace

# --- Namespace and server ------------------------------------------------------
start_workload tcptrace-bench

# wrk_run SECONDS: load the server; the result goes to $out/wrk.out. wrk
# runs in the background and the script waits for it with the wait builtin,
# which a trapped signal interrupts at once: Ctrl-C need not wait for the run
# to end (and wrk is out of the terminal's reach: see start_wrk).
wrk_run() {
	start_wrk "$1" "$out/wrk.out"
	local rc=0
	wait "$wrk_pid" || rc=$?
	wrk_pid=""
	((rc == 0)) || die "wrk failed (exit $rc): $(cat "$out/wrk.out")"
}

# --- Tracer configurations -----------------------------------------------------
# The bpftrace program: like tcpstates, one line per state transition of a
# TCP socket (IPv4 addresses, which is all this workload has), here only in
# the benchmark's namespace. BEGIN fires once every probe is attached, and
# creates the ready file (system() needs --unsafe). READY and NETNS are
# replaced before use.
bt_prog='BEGIN { system("touch READY"); }
tracepoint:sock:inet_sock_set_state
/args->protocol == 6 && ((struct sock *)args->skaddr)->__sk_common.skc_net.net->ns.inum == NETNS/
{ printf("%llu %d %s %s:%d %s:%d %d->%d\n", nsecs, pid, comm,
ntop(args->saddr), args->sport, ntop(args->daddr), args->dport, args->oldstate, args->newstate); }'
bt_prog=${bt_prog//NETNS/$ns_inode}
bt_prog=${bt_prog//$'\n'/ } # one line: command_for prints one word a line

# command CONFIG READY-FILE: the tracer's command line, one word a line.
command_for() {
	local tt=("$TCPTRACE" --netns "$nspath" --ready-file "$2")
	case $1 in
	none) ;;
	bpftrace) printf '%s\n' bpftrace --unsafe -o "$out/tracer.out" -e "${bt_prog//READY/$2}" ;;
	text) printf '%s\n' "${tt[@]}" -o text ;;
	json) printf '%s\n' "${tt[@]}" -o json ;;
	events) printf '%s\n' "${tt[@]}" --events -o json ;;
	filtered) printf '%s\n' "${tt[@]}" -o json --port "$FILTER_PORT" ;;
	esac
}

# The commands as the results show them.
: >"$work/commands.tsv"
for c in "${configs[@]}"; do
	case $c in
	none) cmd="(no tracer)" ;;
	bpftrace) cmd="bpftrace --unsafe -o FILE -e '$bt_prog'" ;;
	*) cmd="tcptrace $(command_for "$c" READY | tail -n +2 | tr '\n' ' ')> FILE" ;;
	esac
	shown=/run/netns/NS
	cmd=${cmd//"$nspath"/"$shown"}
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

# run_one CONFIG ROUND: one wrk run under one tracer; appends a row to runs.tsv.
run_one() {
	local cfg=$1 round=$2
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
		# What starting cost (BTF, loading, attaching), kept apart in the JSON.
		cpu_ready=$(cpu_ticks "$tracer_pid")
	fi

	wrk_run "$SECONDS_PER_RUN"
	local requests wrk_us errors
	read -r _ requests wrk_us errors < <(grep '^WRK_RESULT' "$out/wrk.out") ||
		die "no result from wrk: $(cat "$out/wrk.out")"

	local cpu_end=- rss_kib=- tracer_s=- events=- lost=- reported=-
	if [[ -n $tracer_pid ]]; then
		# The tracer's own cost so far, read before it is stopped: CPU time
		# (utime + stime; the BPF programs themselves run in the traced tasks'
		# context and show in conn/s instead) and peak resident memory.
		exited "$tracer_pid" && die "$cfg: the tracer exited during the run: $(tail -n 20 "$terr")"
		cpu_end=$(cpu_ticks "$tracer_pid")
		rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$tracer_pid/status")
		stop "$tracer_pid" INT
		tracer_pid=""
		t1=$EPOCHREALTIME

		case $cfg in
		bpftrace)
			# Transition lines start with the timestamp; "Lost N events"
			# goes to the output or to stderr. Client connections seen:
			# CLOSE -> SYN_SENT transitions.
			events=$(grep -c '^[0-9]' "$tout" || true)
			lost=$(cat "$tout" "$terr" | awk '/^Lost [0-9]+ events/ { n += $2 } END { print n + 0 }')
			reported=$(grep -c ' 7->2$' "$tout" || true)
			tracer_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
			;;
		text)
			local l1 l2
			l1=$(grep '^--- [0-9]* connections in ' "$tout" | tail -n 1 || true)
			l2=$(grep '^--- events ' "$tout" | tail -n 1 || true)
			# "--- 3 connections in 2.054s: closed=3"
			# "--- events 12, lost 0, evicted 0, recursion misses 0"
			local re1='^--- [0-9]+ connections in ([^:]+):' re2='^--- events ([0-9]+), lost ([0-9]+),'
			[[ $l1 =~ $re1 ]] || die "$cfg: no summary in the output: $(tail -n 5 "$terr")"
			tracer_s=$(go_seconds "${BASH_REMATCH[1]}")
			[[ $l2 =~ $re2 ]] || die "$cfg: no event summary in the output: $(tail -n 5 "$terr")"
			events=${BASH_REMATCH[1]} lost=${BASH_REMATCH[2]}
			# Record headers: "HH:MM:SS.mmm comm[pid] laddr → raddr client ..."
			reported=$(grep -c '^[0-9][0-9:.]* .* → [^ ]* client ' "$tout" || true)
			;;
		*)
			local sum
			sum=$(tail -n 1 "$tout")
			[[ $sum == '{"type":"summary"'* ]] || die "$cfg: no summary in the output: $(tail -n 5 "$terr")"
			tracer_s=$(awk -v ms="$(json_field duration_ms "$sum")" 'BEGIN { printf "%.6f", ms / 1000 }')
			events=$(json_field events "$sum")
			lost=$(json_field lost_events "$sum")
			reported=$(grep -c '^{"type":"connection".*"role":"client"' "$tout" || true)
			;;
		esac
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$requests" "$wrk_us" "$errors" \
		"$events" "$tracer_s" "$lost" "$cpu_end" "$rss_kib" "$reported" "$(du -sk "$tout" 2>/dev/null | cut -f1)" "$cpu_ready" \
		>>"$work/runs.tsv"
	log "$(printf 'round %d/%d %-8s %7.0f conn/s  events %s  lost %s  reported %s/%s' "$round" "$ROUNDS" "$cfg" \
		"$(awk -v r="$requests" -v u="$wrk_us" 'BEGIN { print r / (u / 1e6) }')" "$events" "$lost" "$reported" "$requests")"
	rm -f "$tout" "$terr" "$ready" # --events output is large
}

log "namespace $ns (inode $ns_inode), nginx on 127.0.0.1:$PORT, $ROUNDS rounds x ${#configs[@]} configurations x ${SECONDS_PER_RUN}s"
if ((WARMUP_SECONDS > 0)); then
	log "warm-up: ${WARMUP_SECONDS}s untraced"
	wrk_run "$WARMUP_SECONDS"
fi
: >"$work/runs.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
	for c in "${configs[@]}"; do
		run_one "$c" "$r"
	done
done

# --- Report --------------------------------------------------------------------
# Per configuration, medians over the rounds. "vs none" is the median of the
# per-round ratios to the untraced run of the same round (pairing runs that
# were close in time). lost is the total over all rounds: one lossy round
# matters. reported/requests: client connection records (bpftrace: SYN_SENT
# transitions) over requests wrk completed; a little over 100% is expected,
# since the connections wrk has open when it stops are reported too.
mkdir -p "$(dirname "$RESULTS_FILE")"
awk -F'\t' -v rounds="$ROUNDS" -v secs="$SECONDS_PER_RUN" -v clk="$clk_tck" \
	-v threads="$WRK_THREADS" -v conns="$WRK_CONNECTIONS" \
	-v kernel="$(uname -r)" -v cpus="$(nproc)" -v date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
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
function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, "\\t", s); return s }
function num(v, fmt) { return v == "" ? "null" : sprintf(fmt, v) }
function cell(v, fmt) { return v == "" ? "-" : sprintf(fmt, v) }
FNR == NR { command[$1] = $2; next } # commands.tsv
{
	cfg = $1; round = $2
	if (!(cfg in seen)) { seen[cfg] = 1; order[++ncfg] = cfg }
	cps = $3 / ($4 / 1e6)
	rate[cfg, round] = cps
	add(cfg SUBSEP "cps", cps)
	run = sprintf("{\"round\":%d,\"requests\":%d,\"wrk_seconds\":%.3f,\"wrk_errors\":%d,\"conn_per_s\":%.1f", round, $3, $4 / 1e6, $5, cps)
	if ($6 != "-") {
		cpu_s = $9 / clk
		add(cfg SUBSEP "evps", $6 / $7)
		add(cfg SUBSEP "evpc", $6 / $3)
		add(cfg SUBSEP "cpu", cpu_s * 1e6 / $3)
		add(cfg SUBSEP "rss", $10 / 1024)
		add(cfg SUBSEP "rep", $11 / $3)
		lost[cfg] += $8
		start_s = $13 / clk
		run = run sprintf(",\"tracer_seconds\":%.3f,\"events\":%d,\"events_per_s\":%.1f,\"lost_events\":%d,\"tracer_cpu_seconds\":%.2f,\"tracer_cpu_seconds_to_attach\":%.2f,\"tracer_cpu_percent\":%.1f,\"cpu_ms_per_1k_conn\":%.3f,\"cpu_ms_per_1k_conn_after_attach\":%.3f,\"peak_rss_kib\":%d,\"client_connections_reported\":%d,\"output_kib\":%d",
			$7, $6, $6 / $7, $8, cpu_s, start_s, 100 * cpu_s / $7, cpu_s * 1e6 / $3, (cpu_s - start_s) * 1e6 / $3, $10, $11, $12)
	}
	runs[cfg] = runs[cfg] (runs[cfg] == "" ? "" : ",") run "}"
}
END {
	for (i = 1; i <= ncfg; i++) {
		cfg = order[i]
		for (r = 1; r <= rounds; r++)
			if (("none", r) in rate && (cfg, r) in rate) add(cfg SUBSEP "ratio", rate[cfg, r] / rate["none", r])
	}
	hdr = sprintf("%-9s %9s %8s %10s %8s %8s %13s %9s %10s", "config", "conn/s", "vs none", "events/s", "ev/conn", "lost", "CPU ms/1k conn", "peak RSS", "reported")
	print ""
	print hdr
	gsub(/./, "-", hdr); print hdr
	json = sprintf("{\"date\":\"%s\",\"commit\":\"%s\",\"kernel\":\"%s\",\"cpus\":%d,\"rounds\":%d,\"seconds_per_run\":%d,\"wrk\":{\"threads\":%d,\"connections\":%d,\"header\":\"Connection: close\"},\"server\":\"nginx, 1 worker, return 204, in its own network namespace\",\"tracer_output\":\"a file on tmpfs (under %s), read after each run\",\"configs\":[",
		date, commit, kernel, cpus, rounds, secs, threads, conns, esc(outdir))
	for (i = 1; i <= ncfg; i++) {
		cfg = order[i]
		cps = median(vals[cfg, "cps"]); ratio = median(vals[cfg, "ratio"])
		evps = median(vals[cfg, "evps"]); evpc = median(vals[cfg, "evpc"])
		cpu = median(vals[cfg, "cpu"]); rss = median(vals[cfg, "rss"]); rep = median(vals[cfg, "rep"])
		traced = vals[cfg, "evps"] != ""
		printf "%-9s %9.0f %8s %10s %8s %8s %13s %9s %10s\n", cfg, cps, cell(ratio, "%.3f"),
			cell(evps, "%.0f"), cell(evpc, "%.2f"), traced ? lost[cfg] + 0 : "-", cell(cpu, "%.1f"),
			cell(rss, "%.1f MiB"), cell(rep == "" ? "" : rep * 100, "%.1f%%")
		json = json (i > 1 ? "," : "") sprintf("{\"name\":\"%s\",\"command\":\"%s\",\"median\":{\"conn_per_s\":%s,\"ratio_to_none\":%s,\"events_per_s\":%s,\"events_per_conn\":%s,\"cpu_ms_per_1k_conn\":%s,\"peak_rss_mib\":%s,\"reported_per_request\":%s},\"lost_events_total\":%s,\"runs\":[%s]}",
			cfg, esc(command[cfg]), num(cps, "%.1f"), num(ratio, "%.4f"), num(evps, "%.1f"), num(evpc, "%.3f"),
			num(cpu, "%.3f"), num(rss, "%.1f"), num(rep, "%.4f"), traced ? lost[cfg] + 0 : "null", runs[cfg])
	}
	print json "]}" > results
	printf "\nMedians of %d rounds of %ds, interleaved; wrk -t%d -c%d, Connection: close (1 request = 1 connection).\n", rounds, secs, threads, conns
	print "vs none: median of per-round ratios to the untraced run. events/s: over the tracer'"'"'s lifetime (tcptrace: summary"
	print "events / duration; bpftrace: output lines / wall time). lost: total over all rounds. CPU: tracer utime+stime per"
	print "1000 requests (BPF programs run in the traced tasks and show in conn/s). peak RSS: VmHWM. reported: client"
	print "connection records (bpftrace: SYN_SENT transitions) / requests wrk completed. Tracer output went to a tmpfs file."
	for (i = 1; i <= ncfg; i++) printf "  %-9s %s\n", order[i], command[order[i]]
}' "$work/commands.tsv" "$work/runs.tsv"
log "results written to $RESULTS_FILE"
