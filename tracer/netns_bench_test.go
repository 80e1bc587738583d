package tracer_test

// The cost of the socket scans over many network namespaces, as on a
// Kubernetes node: one full scan (enter each namespace, walk its TCP
// tables), a discovery of the namespaces (with and without new ones to
// enter for their sysctls), and the start-up seed (sockets, then every
// process's files for their owners). Wall time and CPU time (user and
// system, of the whole process: the scans run on its threads) per
// operation. Root only. bench/netns-scan.sh runs it:
//
//	TCPTRACE_BENCH_NETNS=100 TCPTRACE_BENCH_SOCKETS=10000 \
//	    go test -run '^$' -bench NetNSScan -benchtime 20x ./tracer/

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a whole number", name, s)
	}
	return n
}

// cpuTime is the user and system time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs op b.N times and reports its CPU time per op next to the
// wall time the benchmark reports.
func measure(b *testing.B, op func()) {
	b.Helper()
	cpu := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		op()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkNetNSScan(b *testing.B) {
	netnstest.RequireRoot(b)
	nsCount := envInt(b, "TCPTRACE_BENCH_NETNS", 100)
	sockets := envInt(b, "TCPTRACE_BENCH_SOCKETS", 10000)
	// Per namespace: a listener and connections on loopback, two sockets
	// each (the accepted end is a socket of the same namespace).
	pairs := max(0, (sockets/nsCount-1)/2)
	var keep []net.Conn // open until the benchmark ends
	b.Cleanup(func() {
		for _, c := range keep {
			c.Close()
		}
	})
	var first uint32
	for range nsCount {
		ns := held(b)
		if first == 0 {
			first = ns.Inode
		}
		var ln net.Listener
		var err error
		ns.Do(func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		for range pairs {
			var c net.Conn
			ns.Do(func() { c, err = net.Dial("tcp", ln.Addr().String()) })
			if err != nil {
				b.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			keep = append(keep, c, s)
		}
	}
	tr, err := tracer.New(tracer.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	found := tr.DiscoverNetNS(false)
	seen := 0
	if err := tr.ScanSockets(func(*timeline.Socket) { seen++ }); err != nil {
		b.Fatal(err)
	}
	procs, _ := os.ReadDir("/proc")
	b.Logf("%d namespaces scanned (%d made here), %d TCP sockets (%d made here), %d /proc entries",
		found, nsCount, seen, nsCount*(1+2*pairs), len(procs))
	if found < nsCount || seen < nsCount*(1+2*pairs) {
		b.Fatalf("the scans miss namespaces or sockets")
	}

	corr := timeline.New(timeline.DefaultConfig(), func(*timeline.Connection) {})
	b.Run("scan", func(b *testing.B) {
		measure(b, func() {
			if err := tr.Scan(corr, time.Now().UnixNano()); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(float64(found), "netns")
		b.ReportMetric(float64(seen), "sockets")
	})
	// What follows the orphans of one namespace between full scans.
	b.Run("follow-1-netns", func(b *testing.B) {
		measure(b, func() {
			if err := tr.FollowIn(corr, time.Now().UnixNano(), first); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("discovery", func(b *testing.B) {
		measure(b, func() { tr.DiscoverNetNS(false) })
	})
	b.Run("discovery-all-new", func(b *testing.B) {
		measure(b, func() { tr.DiscoverNetNS(true) })
	})
	b.Run("seed", func(b *testing.B) {
		measure(b, func() {
			c := timeline.New(timeline.DefaultConfig(), func(*timeline.Connection) {})
			if err := tr.Seed(c, time.Now().UnixNano()); err != nil {
				b.Fatal(err)
			}
		})
	})
}
