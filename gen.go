package main

// The kernel programs in bpf/ are compiled by bpf2go into tracer/, as a Go
// file plus the object it embeds; both are committed, so `go build` needs no
// clang. `make generate` reruns this. -target bpfel: the programs read no
// pt_regs, so one little-endian object serves amd64 and arm64 alike.
// -mcpu=v3: the queues in socket storage are claimed with cmpxchg
// (BPF atomics, Linux >= 5.12).
//go:generate go tool bpf2go -go-package tracer -output-dir tracer -tags linux -type record -type entry -type record_kind -type event_type -type event_flags -type sock_info -type owner_info -type syscall_id -type tcp_figures -type est_figures -type retransmit_kind -target bpfel tcptrace bpf/tcptrace.bpf.c -- -I./bpf -O2 -g -mcpu=v3 -Wall -Werror
