package tracer_test

// The per-socket queues as the kernel really sends them at exit: by a flush
// scan through iter/tcp, whose output reaches the loader in read()s of the
// kernel's buffer.

import (
	"net"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// A read() of an iterator fills a buffer of 8 pages, about 89 queue records.
// The socket whose record does not fit is shown again in the next read(),
// and its scan must find its queue as it was. With 150 connections open at
// exit (301 sockets with a queue, three reads), every one is reported once,
// and nothing is lost.
func TestEveryOpenConnectionReportedAtExit(t *testing.T) {
	ns := netnstest.New(t)
	// One tracer, queueing: the one-by-one tracer beside it has no queues.
	c, stop := startCapture(t, ns, tracer.Config{}, timeline.DefaultConfig(), false, time.Now().UnixNano())
	t.Cleanup(stop)
	ln, port := listen(t, ns, "127.0.0.1:0")
	const pairs = 150
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range pairs {
		cli := dial(t, ns, ln.Addr().String())
		conns = append(conns, cli, accept(t, ln))
	}
	stop() // the connections are still open: their queues go in the flush scan

	c.mu.Lock()
	defer c.mu.Unlock()
	times := map[uint64]int{} // records of each open socket of the pairs
	clients, servers := 0, 0
	for _, r := range c.recs {
		isClient, isServer := client(port)(r), server(port)(r)
		if r.Outcome != timeline.OutcomeOpen || !isClient && !isServer {
			continue
		}
		if times[r.Cookie]++; times[r.Cookie] > 1 {
			continue
		}
		if isClient {
			clients++
		} else {
			servers++
		}
	}
	if clients != pairs || servers != pairs {
		t.Errorf("reported open at exit: %d clients and %d servers, want %d of each", clients, servers, pairs)
	}
	for cookie, n := range times {
		if n != 1 {
			t.Errorf("socket %d reported %d times", cookie, n)
		}
	}
}
