#!/usr/bin/env bash
# Installs, from Debian packages, what building and testing tcptrace needs
# beyond Go: clang/llvm and libbpf headers to compile bpf/ (make generate),
# nftables for the integration tests that drop SYNs, podman and runc for the
# container tests and the image (deploy/), prometheus (with promtool) for
# the metrics tests and the alerting rules, nginx for the prefork-owner
# test and, with curl and python3, the real-program goldens. Only what is
# missing.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v nft >/dev/null || need+=(nftables)
# tcpdump: tests check records against the wire.
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ip >/dev/null || need+=(iproute2)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
# prometheus: promtool checks the alerting rules and the exposition, and the
# metrics integration test scrapes tcptrace with the real server.
command -v promtool >/dev/null || need+=(prometheus)
# nginx: the prefork-owner test runs a real nginx with two workers.
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# curl and python3: the real-program goldens (curl against python3 -m
# http.server and against nginx, a half-closing client, a resetting server).
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
for pkg in "$@"; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${need[*]}; run as root (sudo make deps)" >&2
	exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
