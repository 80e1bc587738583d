package tracer_test

// Owners where users look first, without any program on send() or recv():
// a prefork server (the master listens, workers accept), a socket accepted
// by one thread and used by another, a client socket created before a fork.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// abort closes c with SO_LINGER {1, 0}: a RST, which the peer's socket
// handles in softirq context, outside any system call of its owner.
func abort(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// The master listens and a worker process accepts; the connection ends by a
// RST from the client, so the worker never closes it in a system call: its
// owner can only come from accept().
func TestOwnerPreforkWorker(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	checkPreforkWorkerOwns(t, ns, c, ln, port)
}

// The same with a listener older than tracing (a server started before
// tcptrace): its accepted sockets have no owner to copy from it, and their
// owner still comes from accept(), not from the listener's owner.
func TestOwnerPreforkWorkerListenerOlderThanTracing(t *testing.T) {
	ns := netnstest.New(t)
	ln, port := listen(t, ns, "127.0.0.1:0")
	c := trace(t, ns, tracer.Config{})
	checkPreforkWorkerOwns(t, ns, c, ln, port)
}

// checkPreforkWorkerOwns has a worker process accept from ln, the client
// abort, and checks that the server record is the worker's.
func checkPreforkWorkerOwns(t *testing.T, ns *netnstest.NS, c *capture, ln *net.TCPListener, port uint16) {
	t.Helper()
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	w := startPeerWith(t, ns, "tt-worker", "worker", "", []*os.File{lf})
	cli := dial(t, ns, ln.Addr().String())
	if l := w.line(t); l != "accepted" {
		t.Fatalf("worker: %s", l)
	}
	abort(t, cli)
	sr := c.record("server", server(port))
	if sr.PID != uint32(w.cmd.Process.Pid) || sr.Comm != "tt-worker" {
		t.Errorf("server record owned by %s[%d], want the worker tt-worker[%d] (the master is %d)\n%s",
			sr.Comm, sr.PID, w.cmd.Process.Pid, os.Getpid(), describe(sr))
	}
	if sr.Outcome != timeline.OutcomeResetByPeer {
		t.Errorf("server outcome %s, want reset_by_peer", sr.Outcome)
	}
	w.stdin.Close()
	w.wait(t)
}

// One thread accepts, another closes: the owner is their process.
func TestOwnerAcceptOneThreadCloseAnother(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	cli := dial(t, ns, ln.Addr().String())
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		runtime.LockOSThread() // a thread of its own
		defer runtime.UnlockOSThread()
		accepted <- accept(t, ln)
	}()
	srv := <-accepted
	closed := make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		srv.Close()
		closed <- syscall.Gettid()
	}()
	<-closed
	cli.Close()
	sr := c.record("server", server(port))
	if sr.PID != uint32(os.Getpid()) {
		t.Errorf("server record owned by %s[%d], want this process %d\n%s", sr.Comm, sr.PID, os.Getpid(), describe(sr))
	}
}

// A client socket connected by a parent and handed to its child at fork:
// the child closes it, and owns it by then.
func TestOwnerClientSocketAcrossFork(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	ln, port := listen(t, ns, "127.0.0.1:0")
	cli := dial(t, ns, ln.Addr().String())
	srv := accept(t, ln)
	defer srv.Close()
	f, err := cli.File() // a second descriptor of the same socket, for the child
	if err != nil {
		t.Fatal(err)
	}
	child := startPeerWith(t, ns, "tt-child", "closer", "", []*os.File{f})
	if l := child.line(t); l != "holding" {
		t.Fatalf("child: %s", l)
	}
	f.Close()
	cli.Close() // the parent lets go: the child holds the last reference
	fmt.Fprintln(child.stdin, "close")
	if l := child.line(t); l != "closed" {
		t.Fatalf("child: %s", l)
	}
	child.wait(t)
	cr := c.record("client", client(port))
	if cr.PID != uint32(child.cmd.Process.Pid) || cr.Comm != "tt-child" {
		t.Errorf("client record owned by %s[%d], want the child tt-child[%d]\n%s",
			cr.Comm, cr.PID, child.cmd.Process.Pid, describe(cr))
	}
}

// The real prefork server: nginx with two workers. Every connection a
// client aborts after its reply (keep-alive, then RST: the worker never
// closes it in a system call) is owned by the worker that accepted it,
// never by the master that listened.
func TestOwnerNginxWorkers(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
		if _, err := os.Stat(nginx); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("nginx is not installed: CI installs nginx-light (scripts/install-deps.sh)")
			}
			t.Skip("nginx is not installed (Debian: nginx-light)")
		}
	}
	ns := netnstest.New(t)
	dir := t.TempDir()
	_, port := listen(t, ns, "127.0.0.1:0") // a free port in the namespace
	conf := fmt.Sprintf(`worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
	server { listen 127.0.0.2:%[2]d; location / { return 204; } }
}
`, dir, port)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c := trace(t, ns, tracer.Config{})
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	ns.Do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGQUIT); cmd.Wait() })
	master := cmd.Process.Pid

	const conns = 20
	addr := fmt.Sprintf("127.0.0.2:%d", port)
	deadline := time.Now().Add(waitTimeout)
	for made := 0; made < conns; {
		var conn net.Conn
		ns.Do(func() { conn, err = net.Dial("tcp", addr) })
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("nginx does not answer on %s: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond) // a bounded retry while nginx starts
			continue
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(waitTimeout))
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(status, "204") {
			t.Fatalf("nginx answered %q, %v", status, err)
		}
		abort(t, conn.(*net.TCPConn))
		made++
	}
	workers := workerPIDs(t, master)
	recs := c.records("nginx's records", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleServer && r.LPort == port
	}, conns)
	for _, r := range recs {
		if r.PID == uint32(master) || !slices.Contains(workers, r.PID) || r.Comm != "nginx" {
			t.Errorf("record owned by %s[%d]; nginx's master is %d, its workers %v\n%s", r.Comm, r.PID, master, workers, describe(r))
		}
	}
}

// workerPIDs lists the children of nginx's master.
func workerPIDs(t *testing.T, master int) []uint32 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil {
		t.Fatal(err)
	}
	var pids []uint32
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, uint32(n))
		}
	}
	if len(pids) != 2 {
		t.Fatalf("nginx's master %d has children %v, want two workers", master, pids)
	}
	return pids
}
