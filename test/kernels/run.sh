#!/usr/bin/env bash
# Run tcptrace's Go tests (or a command) inside another Linux kernel, booted
# under QEMU with TCG emulation: Debian's cloud kernel, a busybox initramfs
# holding static Go test binaries, nft and the kernel modules they need.
#
# Usage:
#   test/kernels/run.sh [test] [-- TEST-BINARY-ARGS...]   run the Go tests
#   test/kernels/run.sh cmd -- COMMAND [ARGS...]            run one command
#   test/kernels/run.sh shell                               interactive shell
#
# e.g.  test/kernels/run.sh test -- -test.run 'TestRefused|TestIPv6'
#       test/kernels/run.sh cmd -- tcptrace --duration 5s
#
# The guest has /usr/bin/tcptrace (built from the module), nft, iproute2's
# ip/tc/ss and tcpdump when the host has them, and busybox. See README.md for the
# variables (KERNEL, PKGS, TIMEOUT, ...). Exit status: 0 when everything
# passed; 1 tests failed; 2 the guest kernel panicked or oopsed; 3 timeout
# or no result; 4 setup failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

KERNEL=${KERNEL:-6.1}                       # kernel series: Debian's linux-image-$KERNEL{.0-N,.N+debNN}-cloud-amd64-unsigned
KERNEL_PKG=${KERNEL_PKG:-}                  # exact package name, overrides KERNEL
MODULE_DIR=${MODULE_DIR:-$(cd "$here/../.." && pwd)}
PKGS=${PKGS:-./tracer ./tracer/timeline}    # Go packages whose tests run, relative to MODULE_DIR
# The timeouts are about twice the slowest run measured (Linux 6.12, all four
# packages: ./tracer 852-900 s, the whole run 1168 s; 6.1 takes half of that):
# under TCG a tracer's start spends seconds in the verifier (7.6 s of system
# time on 6.12 against 2.9 s on 6.1), and nearly every test starts one or two.
TIMEOUT=${TIMEOUT:-2700}                    # seconds for the whole QEMU run
TEST_TIMEOUT=${TEST_TIMEOUT:-30m}           # -test.timeout of each test binary (panics with stacks)
QEMU_MEM=${QEMU_MEM:-2048}                  # MiB
QEMU_SMP=${QEMU_SMP:-2}
TCG_THREAD=${TCG_THREAD:-single}            # single (all guest CPUs on one host thread) or multi; see below
QEMU_EXTRA=${QEMU_EXTRA:-}                  # extra qemu arguments (word-split)
KERNEL_CMDLINE=${KERNEL_CMDLINE:-}          # appended to the kernel command line
GUEST_BINS=${GUEST_BINS:-nft ip tc ss tcpdump} # host programs copied in with their libraries (nft is required; tcpdump: tests compare records with the wire)
KMODS=${KMODS:-nfnetlink nf_tables}         # modules loaded at boot; others autoload via modprobe
KMOD_DIRS=${KMOD_DIRS:-net/netfilter net/ipv4/netfilter net/ipv6/netfilter net/sched drivers/net/veth.ko drivers/net/dummy.ko}
GUEST_ENV=${GUEST_ENV:-}                    # NAME=VALUE ... exported in the guest
if [[ $(id -u) == 0 ]]; then
	CACHE_DIR=${CACHE_DIR:-/var/cache/tcptrace-kernels}
else
	CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tcptrace-kernels}
fi
KEEP_WORK=${KEEP_WORK:-}                    # non-empty: keep the work directory (initramfs tree)

mode=test
if [[ $# -gt 0 && $1 != -- ]]; then
	mode=$1
	shift
fi
[[ ${1:-} == -- ]] && shift
case $mode in
test | cmd | shell) ;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "run.sh: unknown mode '$mode' (test, cmd or shell)" >&2
	exit 4
	;;
esac
if [[ $mode == cmd && $# -eq 0 ]]; then
	echo "run.sh: cmd needs a command, e.g. run.sh cmd -- tcptrace --version" >&2
	exit 4
fi

log() { echo "kernels: $*" >&2; }
die() {
	log "error: $*"
	exit 4
}

# ---------------------------------------------------------------- host tools

apt_updated=
apt_update_once() {
	[[ -n $apt_updated ]] && return 0
	[[ $(id -u) == 0 ]] || die "apt-get update needs root (missing: $*)"
	log "apt-get update (for $*)"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt_updated=1
}

apt_install() {
	apt_update_once "$@"
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# apt_download PKG DIR: the .deb of PKG's candidate version into DIR.
apt_download() {
	local pkg=$1 dir=$2
	if ! (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); then
		# Stale lists point at versions the mirror no longer has.
		[[ -z $apt_updated ]] || die "apt-get download $pkg failed"
		apt_update_once "$pkg"
		(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) || die "apt-get download $pkg failed"
	fi
}

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
command -v nft >/dev/null || [[ -x /usr/sbin/nft ]] || missing+=(nftables)
command -v timeout >/dev/null || missing+=(coreutils)
command -v flock >/dev/null || missing+=(util-linux)
command -v go >/dev/null || die "go is not on PATH"
[[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
export PATH=$PATH:/usr/sbin:/sbin

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
flock 9 # one run at a time prepares the cache

# ------------------------------------------------------------------ busybox

# Busybox comes from the busybox-static package unpacked in the cache, so the
# host's own busybox (dynamic, needed by initramfs-tools) is left alone.
busybox=$CACHE_DIR/busybox/bin/busybox
if [[ ! -x $busybox ]]; then
	tmp=$(mktemp -d "$CACHE_DIR/.busybox.XXXXXX")
	apt_download busybox-static "$tmp"
	dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
	bb=$tmp/x/bin/busybox
	[[ -x $bb ]] || bb=$tmp/x/usr/bin/busybox
	[[ -x $bb ]] || die "no bin/busybox in busybox-static"
	rm -rf "$CACHE_DIR/busybox"
	mkdir -p "$CACHE_DIR/busybox/bin"
	cp "$bb" "$busybox"
	rm -rf "$tmp"
fi

# ------------------------------------------------------------------- kernel

# The newest cloud kernel package of the series in the apt lists. Debian
# names them two ways: linux-image-6.1.0-N-cloud-amd64-unsigned (a release's
# own kernel, 6.1 in Debian 12) and linux-image-6.12.N+debNN-cloud-amd64-unsigned
# (a newer kernel built for an older release: 6.12 in bookworm-security,
# which the host's apt sources already have).
newest_kernel_pkg() {
	local re="^linux-image-${KERNEL//./\\.}((\\.0)?-[0-9]+|\\.[0-9]+\\+deb[0-9]+)-cloud-amd64-unsigned\$"
	apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" | sort -V | tail -n1
}

kpkg=$KERNEL_PKG
if [[ -z $kpkg ]]; then
	kpkg=$(newest_kernel_pkg)
	if [[ -z $kpkg && $(id -u) == 0 ]]; then
		apt_update_once "linux-image-$KERNEL"
		kpkg=$(newest_kernel_pkg)
	fi
fi
kdir=
if [[ -n $kpkg ]]; then
	kvers=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
	if [[ -z $kvers && $(id -u) == 0 ]]; then
		apt_update_once "$kpkg"
		kvers=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
	fi
	[[ -n $kvers ]] && kdir=$CACHE_DIR/kernels/${kpkg}_$kvers
fi
if [[ -z $kdir ]]; then
	# No apt lists (offline): the newest kernel of the series already cached.
	# ([.-] after the series: 6.1's glob must not take a cached 6.12.)
	if [[ -n $KERNEL_PKG ]]; then
		kdir=$(ls -d "$CACHE_DIR/kernels/${KERNEL_PKG}_"* 2>/dev/null | sort -V | tail -n1 || true)
	else
		kdir=$(ls -d "$CACHE_DIR/kernels/linux-image-$KERNEL"[.-]*_* 2>/dev/null | sort -V | tail -n1 || true)
	fi
	[[ -n $kdir ]] || die "no Debian package found for kernel $KERNEL (set KERNEL_PKG?)"
	log "apt knows no kernel package; using the cached $(basename "$kdir")"
fi

if [[ ! -f $kdir/.ready ]]; then
	log "fetching $kpkg $kvers"
	mkdir -p "$CACHE_DIR/kernels"
	tmp=$(mktemp -d "$CACHE_DIR/kernels/.fetch.XXXXXX")
	apt_download "$kpkg" "$tmp"
	dpkg-deb -x "$tmp"/*.deb "$tmp/x"
	rm -f "$tmp"/*.deb
	rm -rf "$tmp/x/usr" # docs and changelogs
	# Compressed modules are decompressed here, once: busybox's modprobe
	# and the kernel then deal only with plain .ko files.
	find "$tmp/x/lib/modules" -name '*.ko.xz' -exec xz -d {} +
	if find "$tmp/x/lib/modules" -name '*.ko.zst' | grep -q .; then
		command -v zstd >/dev/null || apt_install zstd
		find "$tmp/x/lib/modules" -name '*.ko.zst' -exec zstd -q -d --rm {} +
	fi
	find "$tmp/x/lib/modules" -name '*.ko.gz' -exec gzip -d {} +
	kv=$(ls "$tmp/x/lib/modules")
	"$busybox" depmod -b "$tmp/x" "$kv" || die "depmod failed"
	touch "$tmp/x/.ready"
	rm -rf "$kdir"
	mv "$tmp/x" "$kdir"
	rm -rf "$tmp"
fi
kver=$(ls "$kdir/lib/modules")
vmlinuz=$kdir/boot/vmlinuz-$kver
[[ -f $vmlinuz ]] || die "no $vmlinuz"
flock -u 9

# ------------------------------------------------------------ the initramfs

work=$(mktemp -d "${TMPDIR:-/tmp}/tcptrace-kernels.XXXXXX")
cleanup() {
	if [[ -n $KEEP_WORK ]]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,guest,tests,lib/modules}
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true

cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list-full); do
	[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done
install -m 755 "$here/init" "$root/init"

# Host programs with the shared libraries they load.
copy_with_libs() {
	local bin=$1 dest=$2 lib
	rm -f "$root$dest" # may be a busybox applet's link
	cp -L "$bin" "$root$dest"
	for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' || true); do
		[[ -e $root$lib ]] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}
for b in $GUEST_BINS; do
	p=$(command -v "$b" || true)
	if [[ -z $p ]]; then
		[[ $b == nft ]] && die "nft not found on the host"
		log "note: $b not found on the host, the guest has busybox's or none"
		continue
	fi
	copy_with_libs "$p" "/usr/sbin/$b"
done
for f in /etc/protocols /etc/services /etc/ethertypes; do
	[[ -f $f ]] && cp "$f" "$root$f"
done
mkdir -p "$root/etc/iproute2"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# Kernel modules: the KMOD_DIRS subtrees and everything they depend on.
mdir=lib/modules/$kver
mods=$(cd "$kdir/$mdir" && for d in $KMOD_DIRS; do
	[[ -e kernel/$d ]] && find "kernel/$d" -name '*.ko'
done | sort -u || true)
mods=$(awk -v want="$mods" '
	BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) if (w[i] != "") keep[w[i]] = 1 }
	{ sub(":", "", $1); dep[$1] = $0 }
	END {
		changed = 1
		while (changed) {
			changed = 0
			for (m in keep) {
				k = split(dep[m], d, " ")
				for (i = 2; i <= k; i++) if (!(d[i] in keep)) { keep[d[i]] = 1; changed = 1 }
			}
		}
		for (m in keep) print m
	}' "$kdir/$mdir/modules.dep")
mkdir -p "$root/$mdir"
for m in $mods; do
	mkdir -p "$root/$mdir/$(dirname "$m")"
	cp "$kdir/$mdir/$m" "$root/$mdir/$m"
done
cp "$kdir/$mdir"/modules.{order,builtin} "$root/$mdir/" 2>/dev/null || true
"$busybox" depmod -b "$root" "$kver" || die "depmod failed"
printf '%s\n' $KMODS >"$root/guest/modules"

# b64args ARGS...: one base64 line per argument, for the init's quoteargs.
b64args() {
	local a
	for a in "$@"; do
		printf '%s' "$a" | base64 -w0
		echo
	done
}

# Go binaries: static, so they need nothing from the guest.
cd "$MODULE_DIR"
export CGO_ENABLED=0
log "building tcptrace"
go build -o "$root/usr/bin/tcptrace" . || die "go build failed"
echo "$mode" >"$root/guest/mode"
: >"$root/guest/manifest"
if [[ $mode == test ]]; then
	i=0
	for pkg in $PKGS; do
		i=$((i + 1))
		name=$(go list -f '{{.Name}}' "$pkg") || die "go list $pkg failed"
		pdir=$(go list -f '{{.Dir}}' "$pkg")
		gdir=/tests/$i-$name
		mkdir -p "$root$gdir"
		log "building the tests of $pkg"
		go test -c -o "$root$gdir/$name.test" "$pkg" || die "go test -c $pkg failed"
		if [[ ! -f $root$gdir/$name.test ]]; then
			log "note: $pkg has no tests"
			rm -rf "${root:?}$gdir"
			continue
		fi
		[[ -d $pdir/testdata ]] && cp -r "$pdir/testdata" "$root$gdir/"
		echo "$gdir $name.test $pkg" >>"$root/guest/manifest"
	done
	[[ -s $root/guest/manifest ]] || die "none of the packages ($PKGS) has tests"
	b64args -test.v "-test.timeout=$TEST_TIMEOUT" "$@" >"$root/guest/testargs"
elif [[ $mode == cmd ]]; then
	b64args "$@" >"$root/guest/cmd"
fi
{
	echo GOTRACEBACK=all
	echo "TCPTRACE_TEST_KERNEL=$kver"
	echo "TCPTRACE_BINARY=/usr/bin/tcptrace" # the guest has no go to build one
	for kv in $GUEST_ENV; do echo "$kv"; done
} >"$root/guest/env"

initrd=$work/initrd.cpio
(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$initrd"
log "initramfs: $(du -h "$initrd" | cut -f1), kernel $kver ($(basename "$kdir"))"

# -------------------------------------------------------------------- boot

mkdir -p "$CACHE_DIR/logs"
# One log per run (runs of two worktrees at once must not share one), the
# newest 20 kept.
LOG=${LOG:-$CACHE_DIR/logs/$kver-$mode-$(date +%Y%m%d-%H%M%S)-$$.log}
ls -t "$CACHE_DIR/logs/"*.log 2>/dev/null | tail -n +20 | xargs -r rm -f --
cmdline="console=ttyS0 panic=-1 oops=panic quiet loglevel=4 mitigations=off random.trust_cpu=on $KERNEL_CMDLINE"
# Multi-threaded TCG runs each guest CPU on a host thread of its own. Under
# it, with QEMU 7.2 (Debian 12's), Linux 6.12 died within a minute, twice
# in two runs, of "Oops: int3" at syscall_exit_to_user_mode_prepare+0xe1
# as a test binary left a system call (perf_event_open, nanosleep): the int3 that
# text_poke_bp() puts in a 2-byte jump while it patches a static branch
# (probably the sys_exit tracepoint's, flipped as the tests attach and
# detach the accept() programs), still executed once the patch was done.
# That looks like QEMU's multi-threaded TCG and cross-modifying code, not
# the kernel: with one host thread (thread=single, both guest CPUs on it,
# so slower) 6.12 ran three full runs without an oops. 6.1, multi-threaded
# until then, hung the same way (a soft lockup of CPU 0 for over 75 s in a
# test binary) once the tests ran tcpdump, which flips a static key too
# (packet timestamps), and passed single-threaded: every series now runs
# single-threaded unless TCG_THREAD=multi.
qemu=(qemu-system-x86_64 -accel "tcg,thread=$TCG_THREAD" -cpu max -smp "$QEMU_SMP" -m "$QEMU_MEM"
	-display none -no-reboot -nic none
	-kernel "$vmlinuz" -initrd "$initrd" -append "$cmdline")
# shellcheck disable=SC2206
qemu+=($QEMU_EXTRA)

if [[ $mode == shell ]]; then
	"${qemu[@]}" -serial mon:stdio
	exit
fi

log "booting under TCG (thread=$TCG_THREAD, timeout ${TIMEOUT}s), console log: $LOG"
start=$(date +%s)
set +e
# The console is streamed as it comes (carriage returns dropped) and kept.
timeout -k 10 "$TIMEOUT" "${qemu[@]}" -serial stdio -monitor none </dev/null 2>&1 |
	sed -u 's/\r$//' | tee "$LOG"
qrc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))

# ----------------------------------------------------------------- verdict

passed=$(grep -cE '^--- PASS' "$LOG" || true)
failed=$(grep -cE '^--- FAIL' "$LOG" || true)
skipped=$(grep -cE '^--- SKIP' "$LOG" || true)
result=$(grep -aoE 'TCPTRACE-RESULT: TESTS-(PASSED|FAILED rc=[0-9]+)' "$LOG" | tail -n1 || true)
echo
if grep -aqE 'Kernel panic - not syncing|^\[ *[0-9.]+\] (BUG:|Oops|general protection fault)' "$LOG"; then
	grep -aE 'Kernel panic|BUG:|Oops|general protection fault' "$LOG" | head -n5 >&2
	log "FAILED: the guest kernel panicked or oopsed ($kver, ${elapsed}s)"
	rc=2
elif [[ $qrc == 124 || $qrc == 137 ]]; then
	log "FAILED: timed out after ${TIMEOUT}s ($kver)"
	rc=3
elif [[ -z $result ]]; then
	log "FAILED: the guest printed no result (qemu exit $qrc, $kver, ${elapsed}s)"
	rc=3
elif [[ $result == *PASSED ]]; then
	log "PASSED on Linux $kver in ${elapsed}s"
	rc=0
else
	log "FAILED on Linux $kver in ${elapsed}s: ${result#TCPTRACE-RESULT: }"
	grep -aE '^(--- FAIL|=== TCPTRACE-PACKAGE-RESULT .* rc=[1-9])' "$LOG" >&2 || true
	rc=1
fi
if [[ $mode == test ]]; then
	echo "kernel $kver: $passed passed, $failed failed, $skipped skipped"
fi
exit $rc
