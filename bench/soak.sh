#!/usr/bin/env bash
# Soak: does tcptrace hold up under sustained connection churn?
#
# The load of bench/overhead.sh: nginx (one worker, "return 204") loaded by
# wrk with "Connection: close", so every request is a new TCP connection,
# both on loopback in a network namespace this script creates (its own
# ephemeral port range and tcp_tw_reuse). It runs for DURATION seconds
# (default 5 minutes) with `tcptrace -o json --netns` consuming it. The JSON
# is counted on the fly (it would be gigabytes in a file): client connection
# records, {"type":"lost"} lines and the summary.
#
# Reported:
#   - connections made (wrk's requests) vs reported (client records) and
#     lost events (summary): every connection is reported, or the loss is
#     counted. Reported may exceed made by the connections wrk had open when
#     it stopped;
#   - tracer RSS (VmRSS) every SAMPLE_SECONDS, as a series, its min and max,
#     and whether it stays flat after the first sample (within 10% or
#     FLAT_MIB, whichever is larger);
#   - events and ring-buffer records (summary: ring_records; a build
#     before batching has none, a record per event) per connection made;
#   - tracer CPU (utime + stime): seconds, percent of one CPU, ms per 1000
#     connections.
#
# Usage:  bench/soak.sh   (as root; or: make soak)
# Environment:
#   DURATION=300         seconds of load
#   SAMPLE_SECONDS=10    RSS/CPU sampling period
#   FLAT_MIB=4           RSS growth tolerated as "flat", besides 10%
#   WRK_THREADS=1  WRK_CONNECTIONS=32
#   PIN_CPUS=1           nginx on CPU 0, wrk on CPU 1 (0: wherever the scheduler puts them)
#   TCPTRACE=PATH        use this binary instead of building one
#   TCPTRACE_ARGS="..."  extra tcptrace flags
#
# Exit status: 0 when the run completed, whatever the figures, except
# 1 when connections went missing without lost events being reported (a
# silent loss), or when the soak cannot run (not root, a tool missing, the
# tracer exiting early or printing no summary).
set -euo pipefail

script_name=soak # the prefix of log lines
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-300}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
FLAT_MIB=${FLAT_MIB:-4}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
TCPTRACE=${TCPTRACE:-}
TCPTRACE_ARGS=${TCPTRACE_ARGS:-}
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}

whole_numbers DURATION SAMPLE_SECONDS FLAT_MIB WRK_THREADS WRK_CONNECTIONS READY_TIMEOUT STOP_TIMEOUT
((DURATION >= 1 && SAMPLE_SECONDS >= 1 && WRK_THREADS >= 1 && WRK_CONNECTIONS >= WRK_THREADS)) ||
	die "need DURATION >= 1, SAMPLE_SECONDS >= 1, WRK_CONNECTIONS >= WRK_THREADS >= 1"
require_root

# --- Tools: installed from Debian's packages when missing ---------------------
install_tools
require_tools nginx wrk ip ss timeout awk

trap_cleanup

work=$(mktemp -d /tmp/tcptrace-soak.XXXXXX)

build_tcptrace

# --- Namespace and server -------------------------------------------------------
start_workload tcptrace-soak

# --- tcptrace, its output counted on the fly ------------------------------------
# Through a FIFO so that $! is tcptrace itself (for RSS and CPU) and the
# counter is a separate process. The counter keeps the summary line and
# counts client records and lost lines; it writes its counts when the
# output ends. Lines start with {"schema_version":N,"type":... (older
# builds: {"type":...).
mkfifo "$work/out.fifo"
awk -v counts="$work/counts" -v summary="$work/summary" -v others="$work/others" '
{ t = $0; sub(/^\{"schema_version":[0-9]+,/, "{", t) }
index(t, "{\"type\":\"connection\"") == 1 { if (index(t, "\"role\":\"client\"")) c++; else o++; next }
index(t, "{\"type\":\"lost\"") == 1 { l++; next }
index(t, "{\"type\":\"summary\"") == 1 { print > summary; next }
{ if (++x <= 1000) print > others } # the first 1000, for the report
END { printf "%d %d %d %d\n", c, o, l, x > counts }' <"$work/out.fifo" &
counter_pid=$!
read -r -a extra <<<"$TCPTRACE_ARGS"
"$TCPTRACE" -o json --netns "$nspath" --ready-file "$work/ready" ${extra[@]+"${extra[@]}"} \
	>"$work/out.fifo" 2>"$work/tracer.err" &
tracer_pid=$!
wait_for "$READY_TIMEOUT" tracer_ready "$work/ready" tcptrace "$work/tracer.err" || die "tcptrace not attached after ${READY_TIMEOUT}s"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

cpu0=$(cpu_ticks "$tracer_pid")
rss0=$(rss_kib "$tracer_pid")
log "namespace $ns, nginx on 127.0.0.1:$PORT, wrk -t$WRK_THREADS -c$WRK_CONNECTIONS for ${DURATION}s, tcptrace $TCPTRACE_ARGS-o json --netns (pid $tracer_pid)"
log "tracer attached: RSS $((rss0 / 1024)) MiB, CPU to attach $(awk -v t="$cpu0" -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }') s"

# --- Load, sampled ----------------------------------------------------------------
start_wrk "$DURATION" "$work/wrk.out"
usec() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; } # µs since the epoch
t0=$(usec)
printf '%8s %10s %10s %12s\n' "t" "RSS MiB" "CPU %" "VmHWM MiB" >&2
samples=()
prev_cpu=$cpu0
prev_t=$t0
next=$SAMPLE_SECONDS
while ! exited "$wrk_pid"; do
	# Sample every SAMPLE_SECONDS; check on wrk every 0.2 s meanwhile.
	while ! exited "$wrk_pid" && (($(usec) < t0 + next * 1000000)); do
		sleep 0.2
	done
	exited "$wrk_pid" && break
	exited "$tracer_pid" && die "tcptrace exited during the run: $(tail -n 20 "$work/tracer.err")"
	now=$(usec)
	cpu=$(cpu_ticks "$tracer_pid")
	rss=$(rss_kib "$tracer_pid")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$tracer_pid/status")
	awk -v t="$next" -v r="$rss" -v h="$hwm" -v c="$cpu" -v p="$prev_cpu" -v tck="$clk_tck" -v a="$prev_t" -v b="$now" \
		'BEGIN { printf "%7ds %10.1f %10.1f %12.1f\n", t, r / 1024, 100 * (c - p) / tck / ((b - a) / 1e6), h / 1024 }' >&2
	samples+=("$rss")
	prev_cpu=$cpu
	prev_t=$now
	next=$((next + SAMPLE_SECONDS))
done
wait "$wrk_pid" || die "wrk failed: $(cat "$work/wrk.out")"
wrk_pid=""
read -r _ requests wrk_us wrk_errors < <(grep '^WRK_RESULT' "$work/wrk.out") ||
	die "no result from wrk: $(cat "$work/wrk.out")"

cpu_end=$(cpu_ticks "$tracer_pid")
rss_end=$(rss_kib "$tracer_pid")
hwm_end=$(awk '/^VmHWM:/ { print $2 }' "/proc/$tracer_pid/status")
stop "$tracer_pid" INT
tracer_pid=""
wait "$counter_pid" || true
counter_pid=""
[[ -s $work/summary ]] || die "tcptrace printed no summary: $(tail -n 20 "$work/tracer.err")"
read -r clients others lost_lines other_lines <"$work/counts"
sum=$(<"$work/summary")
lost=$(json_field lost_events "$sum")
events=$(json_field events "$sum")
records=$(json_field ring_records "$sum")
[[ -n $records ]] || records=$events # builds before batching: a record per event
evicted=$(json_field evicted "$sum")
connections=$(json_field connections "$sum")
recursion=$(json_field recursion_misses "$sum")
decode_errors=$(json_field decode_errors "$sum")

# --- Report ---------------------------------------------------------------------------
secs=$(awk -v u="$wrk_us" 'BEGIN { printf "%.1f", u / 1e6 }')
missing=$((requests > clients ? requests - clients : 0))
rss_series=""
for s in "${samples[@]+"${samples[@]}"}"; do
	rss_series+="$(awk -v r="$s" 'BEGIN { printf "%.1f", r / 1024 }') "
done
read -r rss_min rss_max rss_first rss_last flat < <(awk -v tol_mib="$FLAT_MIB" -v list="${samples[*]+"${samples[*]}"}" 'BEGIN {
	n = split(list, a, " ")
	if (n == 0) { print "- - - - unknown"; exit }
	min = max = a[1]
	for (i = 2; i <= n; i++) { if (a[i] < min) min = a[i]; if (a[i] > max) max = a[i] }
	# Flat: after the first sample (warm-up), no growth beyond 10% of the
	# first or tol_mib, whichever is larger.
	tol = a[1] * 0.10; if (tol < tol_mib * 1024) tol = tol_mib * 1024
	grow = 0; for (i = 2; i <= n; i++) if (a[i] - a[1] > grow) grow = a[i] - a[1]
	printf "%.1f %.1f %.1f %.1f %s\n", min / 1024, max / 1024, a[1] / 1024, a[n] / 1024, (n < 2 ? "unknown" : grow <= tol ? "yes" : "no")
}')
cpu_s=$(awk -v c="$cpu_end" -v c0="$cpu0" -v h="$clk_tck" 'BEGIN { printf "%.2f", (c - c0) / h }')

echo
echo "soak: ${secs}s of wrk -t$WRK_THREADS -c$WRK_CONNECTIONS, Connection: close, on $(uname -r), $(nproc) CPUs"
printf '  connections made      %d (%.0f/s), wrk errors %d\n' "$requests" "$(awk -v r="$requests" -v s="$secs" 'BEGIN { print r / s }')" "$wrk_errors"
printf '  client records        %d (%.2f%% of made; missing %d), other records %d\n' "$clients" \
	"$(awk -v c="$clients" -v r="$requests" 'BEGIN { print (r ? 100 * c / r : 0) }')" "$missing" "$others"
printf '  summary               connections %s, events %s, ring-buffer records %s, lost_events %s (%d lost lines), evicted %s, recursion misses %s, decode errors %s\n' \
	"$connections" "$events" "$records" "$lost" "$lost_lines" "$evicted" "$recursion" "$decode_errors"
printf '  per connection made   %.2f events, %.2f ring-buffer records\n' \
	"$(awk -v e="$events" -v r="$requests" 'BEGIN { print (r ? e / r : 0) }')" \
	"$(awk -v e="$records" -v r="$requests" 'BEGIN { print (r ? e / r : 0) }')"
printf '  RSS every %ss (MiB)  %s\n' "$SAMPLE_SECONDS" "${rss_series:-(run shorter than one sample)}"
printf '  RSS                   attached %.1f, min %s, max %s, first %s, last %s, at exit %.1f, peak (VmHWM) %.1f MiB; flat: %s\n' \
	"$(awk -v r="$rss0" 'BEGIN { print r / 1024 }')" "$rss_min" "$rss_max" "$rss_first" "$rss_last" \
	"$(awk -v r="$rss_end" 'BEGIN { print r / 1024 }')" "$(awk -v r="$hwm_end" 'BEGIN { print r / 1024 }')" "$flat"
printf '  tracer CPU            %s s after attaching: %.1f%% of one CPU, %.2f ms per 1000 connections\n' "$cpu_s" \
	"$(awk -v c="$cpu_s" -v s="$secs" 'BEGIN { print 100 * c / s }')" \
	"$(awk -v c="$cpu_s" -v r="$requests" 'BEGIN { print (r ? c * 1e6 / r : 0) }')"
if ((other_lines > 0)); then
	printf '  other output lines    %d (alerts and the like): %s; the first:\n' "$other_lines" \
		"$(grep -o '"kind":"[a-z0-9_]*"' "$work/others" | cut -d'"' -f4 | sort | uniq -c | awk '{ printf "%s%s=%d", (NR > 1 ? " " : ""), $2, $1 }')"
	head -n 3 "$work/others" | cut -c1-400 | sed 's/^/    /'
fi

if ((missing > 0)) && [[ $lost == 0 ]]; then
	log "FAIL: $missing connections not reported and no lost events counted: a silent loss"
	exit 1
fi
