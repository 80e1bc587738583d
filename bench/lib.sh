# shellcheck shell=bash
# What bench/overhead.sh and bench/soak.sh share: logging, process helpers,
# the cleanup on exit, the tools they install, the tcptrace they build, and
# the workload (nginx in a network namespace of its own, loaded by wrk).
#
# Sourced, after `set -euo pipefail`, by a script that has set script_name
# (the prefix of its log lines: bench, soak). The functions read the script's
# settings when called: STOP_TIMEOUT (stop), TCPTRACE (build_tcptrace),
# KEEPALIVE_REQUESTS and PIN_CPUS (start_workload), WRK_THREADS,
# WRK_CONNECTIONS and PIN_CPUS (start_wrk).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PORT=8080 # nginx, inside the namespace
PORT_RANGE="10000 65000"

# shellcheck disable=SC2154 # script_name: set by the script that sources this
log() { printf '%s: %s\n' "$script_name" "$*" >&2; }
die() {
	log "$*"
	exit 1
}

# whole_numbers VAR...: die unless each named variable holds a whole number.
whole_numbers() {
	local v
	for v; do
		[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
	done
}

require_root() {
	[[ $(id -u) == 0 ]] || die "needs root: it creates a network namespace and loads BPF programs"
}

# install_tools [COMMAND...]: install from Debian's packages those of nginx,
# wrk, COMMAND... (each a package of the same name) and ip that are missing.
install_tools() {
	local tools_missing=() pkgs=() p
	command -v nginx >/dev/null || tools_missing+=(nginx)
	command -v wrk >/dev/null || tools_missing+=(wrk)
	for p; do
		command -v "$p" >/dev/null || tools_missing+=("$p")
	done
	command -v ip >/dev/null || tools_missing+=(iproute2)
	((${#tools_missing[@]})) || return 0
	log "installing ${tools_missing[*]}"
	apt-get update -q >&2
	for p in "${tools_missing[@]}"; do
		# nginx-light (few modules) where the release still has it.
		if [[ $p == nginx ]] && apt-cache show nginx-light >/dev/null 2>&1; then
			p=nginx-light
		fi
		pkgs+=("$p")
	done
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2
}

# require_tools COMMAND...: die unless each is found.
require_tools() {
	local t
	for t; do
		command -v "$t" >/dev/null || die "$t not found"
	done
}

# --- State for cleanup: whatever is set here is undone on any exit -----------
# A script sets only those it uses; the others stay empty.
ns=""              # network namespace
work=""            # temp dir: binary, nginx prefix
out=""             # overhead.sh: tmpfs dir for tracer output
mounted_out=""     # overhead.sh: we mounted a tmpfs on $out
mounted_tracefs="" # overhead.sh: we mounted tracefs for bpftrace
bpf_stats_saved="" # overhead.sh: kernel.bpf_stats_enabled before we set it
tracer_pid=""
counter_pid="" # soak.sh: the process counting tcptrace's output
nginx_pid=""
wrk_pid=""

# exited PID: the process is gone or a zombie waiting to be reaped.
exited() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	st=${st##*) } # after the comm, which may hold spaces and parentheses
	[[ ${st%% *} == Z ]]
}

# wait_for TIMEOUT COMMAND...: poll COMMAND every 50 ms until it succeeds;
# false after TIMEOUT seconds.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@"; do
		(($(date +%s) < deadline)) || return 1
		sleep 0.05
	done
}

# stop PID SIGNAL: signal a child, give it STOP_TIMEOUT seconds to exit,
# then kill it; reap it either way.
stop() {
	local pid=$1 sig=$2
	[[ -n $pid ]] || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	if ! wait_for "$STOP_TIMEOUT" exited "$pid"; then
		log "process $pid did not exit within ${STOP_TIMEOUT}s of SIG$sig: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop "$wrk_pid" TERM
	stop "$tracer_pid" INT
	stop "$counter_pid" TERM
	stop_workload
	[[ -z $mounted_out ]] || umount "$out"
	[[ -z $out ]] || rm -rf "$out"
	[[ -z $work ]] || rm -rf "$work"
	[[ -z $mounted_tracefs ]] || umount /sys/kernel/tracing
	[[ -z $bpf_stats_saved ]] || sysctl -q -w kernel.bpf_stats_enabled="$bpf_stats_saved"
	exit "$rc"
}

# trap_cleanup: from here on, run cleanup on any exit, Ctrl-C and SIGTERM
# included.
trap_cleanup() {
	trap cleanup EXIT
	trap 'log interrupted; exit 130' INT
	trap 'log terminated; exit 143' TERM
}

# --- tcptrace ------------------------------------------------------------------
# build_tcptrace: unless TCPTRACE names a binary, build one in $work and set
# TCPTRACE to it.
build_tcptrace() {
	if [[ -z $TCPTRACE ]]; then
		command -v go >/dev/null || die "go not found (or set TCPTRACE to a built binary)"
		log "building tcptrace"
		(cd "$repo" && go build -o "$work/tcptrace" .)
		TCPTRACE=$work/tcptrace
	fi
	[[ -x $TCPTRACE ]] || die "$TCPTRACE is not an executable"
}

# tracer_ready READY-FILE NAME LOG...: true once READY-FILE exists; dies,
# quoting the last lines of the LOG files, if the tracer ($tracer_pid)
# exited before that. For wait_for.
tracer_ready() {
	local ready=$1 name=$2
	shift 2
	[[ -e $ready ]] && return 0
	exited "$tracer_pid" && die "$name exited before attaching: $(cat "$@" 2>/dev/null | tail -n 20)"
	return 1
}

# shellcheck disable=SC2034 # used by the scripts
clk_tck=$(getconf CLK_TCK) # cpu_ticks' unit

# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() {
	local st
	st=$(<"/proc/$1/stat")
	st=${st##*) } # after the comm; the first field left is field 3, state
	awk '{ print $12 + $13 }' <<<"$st"
}

# json_field NAME LINE: a number from a flat JSON line.
json_field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p" <<<"$2"; }

# is_json_summary LINE: true for tcptrace's JSON summary line, with the
# leading "schema_version" of current builds or without it (older builds).
is_json_summary() { [[ $1 =~ ^\{(\"schema_version\":[0-9]+,)?\"type\":\"summary\" ]]; }

# --- Namespace and server ------------------------------------------------------
# pinned_to N: "taskset -c N", one word a line, when PIN_CPUS is 1 (the
# default) and the machine has at least two CPUs; else nothing. nginx goes
# on CPU 0 and wrk on CPU 1: left to the scheduler, the two share a CPU now
# and then, and the same untraced run varied by 25% here (pinned: 3%).
# The tracer's loader is not pinned; its programs run where nginx and wrk do.
pinned_to() {
	[[ ${PIN_CPUS:-1} == 1 ]] && (($(nproc) >= 2)) || return 0
	printf '%s\n' taskset -c "$1"
}

# start_workload PREFIX: create the network namespace PREFIX-PID (sets ns,
# nspath, ns_inode), start nginx in it on 127.0.0.1:$PORT (sets nginx_pid)
# and write $work/report.lua for wrk. $work must exist. nginx closes a
# keep-alive connection after KEEPALIVE_REQUESTS requests (default 1000,
# nginx's own default), so keep-alive load still opens a connection per
# that many requests, as it does in production.
start_workload() {
	ns=$1-$$
	[[ ! -e /run/netns/$ns ]] || die "namespace $ns exists already"
	ip netns add "$ns"
	nspath=/run/netns/$ns
	# shellcheck disable=SC2034 # used by overhead.sh
	ns_inode=$(stat -L -c %i "$nspath")
	ip netns exec "$ns" ip link set lo up
	# These are per namespace, so the host's settings are left alone: a wide
	# ephemeral range and TIME_WAIT reuse so that tens of thousands of short
	# connections do not run out of ports, and deep accept queues.
	ip netns exec "$ns" sysctl -q -w \
		net.ipv4.ip_local_port_range="$PORT_RANGE" \
		net.ipv4.tcp_tw_reuse=1 \
		net.core.somaxconn=4096 \
		net.ipv4.tcp_max_syn_backlog=4096

	mkdir -p "$work/nginx"
	cat >"$work/nginx/nginx.conf" <<EOF
# One worker so the server's capacity does not depend on how many cores the
# tracer leaves free; no logging and no files so only TCP work is measured.
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	keepalive_requests ${KEEPALIVE_REQUESTS:-1000};
	server {
		listen 127.0.0.1:$PORT backlog=4096;
		location / { return 204; }
	}
}
EOF
	# ip netns exec execs taskset, which execs nginx, so $! is nginx's
	# master process.
	local pin=()
	mapfile -t pin < <(pinned_to 0)
	ip netns exec "$ns" ${pin[@]+"${pin[@]}"} nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" \
		>"$work/nginx/stdout.log" 2>&1 &
	nginx_pid=$!
	wait_for 10 listening || die "nginx did not start: $(cat "$work/nginx/error.log" "$work/nginx/stdout.log" 2>/dev/null)"

	# wrk prints its totals from this hook in a form that needs no parsing of
	# its human-oriented report.
	cat >"$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("WRK_RESULT %d %d %d\n", summary.requests, summary.duration,
		e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
}

# stop_workload: stop nginx and delete the namespace (and with it the
# sockets left in TIME_WAIT), if there are.
stop_workload() {
	local p
	stop "$nginx_pid" TERM
	nginx_pid=""
	[[ -n $ns ]] || return 0
	# Anything still in our namespace is ours (nginx's worker, a wrk cut
	# short by Ctrl-C): end it by PID before deleting the namespace.
	for p in $(ip netns pids "$ns" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	ip netns del "$ns" 2>/dev/null || true
	ns=""
}

listening() { [[ -n $(ip netns exec "$ns" ss -Hltn "sport = :$PORT") ]]; }

# start_wrk SECONDS OUTPUT [WORKLOAD]: load the server for SECONDS, in the
# background (sets wrk_pid); wrk's report goes to OUTPUT, with a line
# "WRK_RESULT requests microseconds errors". WORKLOAD: churn (the default:
# "Connection: close", a new connection for every request) or keepalive
# (wrk's connections carry request after request). timeout puts wrk in a
# process group of its own, out of the terminal's reach.
start_wrk() {
	local header=(-H 'Connection: close') pin=()
	mapfile -t pin < <(pinned_to 1)
	case ${3:-churn} in
	churn) ;;
	keepalive) header=() ;;
	*) die "start_wrk: unknown workload '$3'" ;;
	esac
	timeout -k 5 $(($1 + 60)) ip netns exec "$ns" ${pin[@]+"${pin[@]}"} \
		wrk -t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -d "${1}s" -s "$work/report.lua" \
		${header[@]+"${header[@]}"} "http://127.0.0.1:$PORT/" >"$2" 2>&1 &
	wrk_pid=$!
}

# active_opens: TCP connections opened by connect() in the benchmark's
# namespace so far (ActiveOpens of its /proc/net/snmp, read through nginx,
# which lives there): client connections, whatever the workload.
active_opens() {
	awk '$1 == "Tcp:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "ActiveOpens") c = i } else { print $c; exit } }' \
		"/proc/$nginx_pid/net/snmp"
}
