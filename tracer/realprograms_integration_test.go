package tracer_test

// Goldens from real programs: curl against python3 -m http.server and
// against nginx (one request, and several on one kept-alive connection), a
// client that half-closes, a server that resets. Each runs in a private
// network namespace; the records the real kernel gave are rendered by the
// text and ladder writers after what varies from run to run is made fixed
// (normalize), and compared with testdata/real/*.golden. go test -update
// rewrites them.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/linecheck"
	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

var update = flag.Bool("update", false, "rewrite the golden files of the real-program tests")

// realPort is the servers' port: the namespace is the test's own, so any
// port is free, and a fixed one keeps the goldens the same.
const realPort = 8000

// ephemeral is the client's port in the goldens, whatever the kernel chose.
const ephemeral = 40000

// program finds a program the test runs, or skips the test (fails in CI).
func program(t *testing.T, name, pkg string, alt ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alt {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed: CI installs %s (scripts/install-deps.sh)", name, pkg)
	}
	t.Skipf("%s is not installed (Debian: %s)", name, pkg)
	return ""
}

// serve starts a server program in ns, stopped at cleanup, and waits until
// a scan shows its listener (no connection made to find out).
func serve(t *testing.T, ns *netnstest.NS, c *capture, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	var err error
	ns.Do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(waitTimeout):
			cmd.Process.Kill()
			<-exited
		}
	})
	c.sockets(name+" listening", func(ss []timeline.Socket) bool {
		for _, s := range ss {
			if s.State == timeline.StateListen && s.LPort == realPort {
				return true
			}
		}
		return false
	})
	return cmd
}

// run runs a client program in ns, within waitTimeout, and returns its
// output; wantFail says it must exit with an error (a reset, say).
func run(t *testing.T, ns *netnstest.NS, wantFail bool, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var err error
	ns.Do(func() { err = cmd.Run() })
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s", name, waitTimeout)
	case err != nil && !(wantFail && errors.As(err, &exit)):
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	case err == nil && wantFail:
		t.Fatalf("%s %s succeeded, want a failure: %s", name, strings.Join(args, " "), stdout.String())
	}
	return stdout.String()
}

// curlSizes is what curl -w says it sent and received, summed over the
// requests: the record's figures must be the same.
func curlSizes(t *testing.T, out string, requests int) (sent, received uint64) {
	t.Helper()
	lines := strings.Fields(strings.TrimSpace(out))
	if len(lines) != requests {
		t.Fatalf("curl printed %q, want %d requests' sizes", out, requests)
	}
	for _, l := range lines {
		var req, hdr, body uint64
		if _, err := fmt.Sscanf(l, "%d,%d,%d", &req, &hdr, &body); err != nil {
			t.Fatalf("curl -w: %q: %v", l, err)
		}
		sent += req
		received += hdr + body
	}
	return sent, received
}

const curlWrite = "%{size_request},%{size_header},%{size_download}\n"

// scenario is one real exchange: the client's and the server's records,
// what they really sent, and the owners' names in the goldens.
type scenario struct {
	cli, srv             *timeline.Connection
	sent, received       uint64 // by the client, as it said; 0: not known
	cliComm, srvComm     string
	cliPrefix, srvPrefix string // what the real names start with
}

// records waits for the records of the connection to realPort: the client's
// and the server's.
func (c *capture) exchange(t *testing.T) (cli, srv *timeline.Connection) {
	t.Helper()
	cli = c.record("client", client(realPort))
	srv = c.record("server", server(realPort))
	return cli, srv
}

// normalize makes real records the same from run to run: each distinct
// moment becomes its rank among all of both records' moments, a
// microsecond apart (the order is kept, equal times stay equal, and what
// the kernel does in one go, such as close() and its RST, stays within the
// millisecond the ladder draws as one row);
// the client's port, the owners and the round-trip times are fixed; the
// byte counts, checked first against what the client said it sent and
// received, become round figures (the headers carry versions).
func normalize(t *testing.T, sc *scenario) {
	t.Helper()
	recs := []*timeline.Connection{sc.cli, sc.srv}
	var times []int64
	for _, r := range recs {
		times = append(times, r.Start, r.End)
		for _, s := range r.Steps {
			times = append(times, s.Time)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC).UnixNano()
	at := func(ns int64) int64 {
		i, _ := slices.BinarySearch(times, ns)
		return t0 + int64(i)*1e3
	}
	for _, r := range recs {
		r.Start, r.End = at(r.Start), at(r.End)
		for i := range r.Steps {
			r.Steps[i].Time = at(r.Steps[i].Time)
		}
		if r.SRTT != 0 {
			r.SRTT = 50
		}
		if r.HandshakeRTT != 0 {
			r.HandshakeRTT = 50
		}
		// What tcp_info said at the end (cwnd, min rtt, busy time) varies
		// from run to run: left out (socket_integration_test checks it).
		r.Info = timeline.TCPInfo{}
	}
	if sc.sent != 0 && (sc.cli.BytesSent != sc.sent || sc.cli.BytesReceived != sc.received ||
		sc.srv.BytesSent != sc.received || sc.srv.BytesReceived != sc.sent) {
		t.Errorf("bytes: client sent %d received %d, server sent %d received %d; the client said it sent %d, received %d",
			sc.cli.BytesSent, sc.cli.BytesReceived, sc.srv.BytesSent, sc.srv.BytesReceived, sc.sent, sc.received)
	}
	normalizeSeq(t, sc)
	round := func(n uint64) uint64 {
		if n == 0 {
			return 0
		}
		return 100
	}
	sc.cli.BytesSent, sc.srv.BytesReceived = round(sc.cli.BytesSent), round(sc.srv.BytesReceived)
	sc.cli.BytesReceived, sc.srv.BytesSent = 10*round(sc.cli.BytesReceived), 10*round(sc.srv.BytesSent)
	if !strings.HasPrefix(sc.cli.Comm, sc.cliPrefix) || !strings.HasPrefix(sc.srv.Comm, sc.srvPrefix) {
		t.Errorf("owners %s and %s, want %s… and %s…", sc.cli.Comm, sc.srv.Comm, sc.cliPrefix, sc.srvPrefix)
	}
	sc.cli.LPort, sc.srv.RPort = ephemeral, ephemeral
	sc.cli.PID, sc.cli.Comm = 100, sc.cliComm
	sc.srv.PID, sc.srv.Comm = 200, sc.srvComm
}

// normalizeSeq checks the records' sequence numbers against each other
// and against the bytes each end sent, then fixes the ISNs and writes the
// FINs after the round byte counts normalize gives: the ladder's relative
// numbers are then the same from run to run (and from one version of a
// program's headers to another).
func normalizeSeq(t *testing.T, sc *scenario) {
	t.Helper()
	c, s := &sc.cli.Seq, &sc.srv.Seq
	if c.HasISN && s.HasISN && (c.ISN != s.PeerISN || c.PeerISN != s.ISN) {
		t.Errorf("ISNs: client %d/%d, server %d/%d", c.ISN, c.PeerISN, s.ISN, s.PeerISN)
	}
	if c.HasFIN && s.HasPeerFIN && c.FIN != s.PeerFIN || s.HasFIN && c.HasPeerFIN && s.FIN != c.PeerFIN {
		t.Errorf("FINs: client %d/%d, server %d/%d", c.FIN, c.PeerFIN, s.FIN, s.PeerFIN)
	}
	// A FIN follows what its end sent: ISN, SYN, the data, FIN.
	check := func(who string, q *timeline.Seq, sent uint64) {
		if q.HasISN && q.HasFIN && uint64(q.FIN-q.ISN-1) != sent {
			t.Errorf("%s: FIN %d is %d after ISN %d, but it sent %d B", who, q.FIN, q.FIN-q.ISN-1, q.ISN, sent)
		}
	}
	check("client", c, sc.cli.BytesSent)
	check("server", s, sc.srv.BytesSent)
	const cliISN, srvISN = 1000000000, 3000000000
	c.ISN, c.PeerISN, s.ISN, s.PeerISN = cliISN, srvISN, srvISN, cliISN
	cliFIN, srvFIN := uint32(cliISN+1+100), uint32(srvISN+1+1000) // after normalize's round figures
	if sc.cli.BytesSent == 0 {
		cliFIN = cliISN + 1
	}
	if sc.srv.BytesSent == 0 {
		srvFIN = srvISN + 1
	}
	c.FIN, s.PeerFIN, s.FIN, c.PeerFIN = cliFIN, cliFIN, srvFIN, srvFIN
}

// render writes both records as the text writer and then as a ladder of
// the pair (paired as the CLI pairs them), then a closing summary with the
// TIME_WAIT counts of a scan of the namespace, counters fixed.
func render(t *testing.T, c *capture, sc *scenario) string {
	t.Helper()
	c.mu.Lock()
	err := c.tr.Scan(c.corr, time.Now().UnixNano())
	total, top, _ := c.corr.TimeWait(5)
	sum := output.NewSummary(c.corr.Stats())
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	port := sc.cli.LPort // the real one
	// The capture's records stay as they are (compared at cleanup with
	// those of the tracer that takes events one by one).
	sc.cli, sc.srv = sc.cli.Clone(), sc.srv.Clone()
	normalize(t, sc)
	var pairs [][2]*timeline.Connection
	p := timeline.NewPairer(timeline.DefaultPairConfig(), func(a, b *timeline.Connection) {
		pairs = append(pairs, [2]*timeline.Connection{a, b})
	})
	p.Add(sc.cli)
	p.Add(sc.srv)
	p.Flush()
	if len(pairs) != 1 || pairs[0][1] == nil {
		t.Fatalf("the two records were not paired: %v", pairs)
	}
	var buf bytes.Buffer
	text := output.NewText(&buf, time.UTC, output.Options{})
	text.Connection(sc.cli)
	text.Connection(sc.srv)
	text.Flush()
	buf.WriteString("\n")
	ladder := output.NewLadder(&buf, time.UTC, output.Options{}, output.LadderOptions{})
	ladder.ConnectionPair(sc.cli, sc.srv)
	// Counters of the namespace's traffic that vary (batching, handshake
	// times, how long the test ran) are fixed; the rest is real.
	sum.Duration, sum.Handshakes, sum.RingRecords = 5*time.Second, timeline.Histogram{}, 0
	sum.Paired = p.Paired()
	sum.TimeWaitKnown, sum.TimeWaitTotal, sum.TimeWaitTop = true, total, top
	for i := range sum.TimeWaitTop {
		if e := &sum.TimeWaitTop[i]; e.Port == port {
			t.Errorf("TIME_WAIT counted by an ephemeral port: %+v", e)
		}
	}
	ladder.Summary(sum)
	return buf.String()
}

// checkOutput checks what holds for any output, beyond the golden
// (internal/linecheck): no line wider than 80 columns, no raw X → X, no
// diagram row that says nothing or only repeats a state, no note running
// into the lines; and the wanted strings.
func checkOutput(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, p := range linecheck.Problems(out) {
		t.Error(p)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, out)
		}
	}
}

// before checks that a comes before b in out.
func before(t *testing.T, out, a, b string) {
	t.Helper()
	i, j := strings.Index(out, a), strings.Index(out, b)
	if i < 0 || j < 0 || i > j {
		t.Errorf("%q is not before %q in:\n%s", a, b, out)
	}
}

func realGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "real", name+".golden")
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s ./tracer/ -update writes it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden (-update rewrites it):\n%s", path, got)
	}
}

// setAgain: r's socket had its state st set again, unchanged (close()
// after shutdown()).
func setAgain(r *timeline.Connection, st timeline.State) bool {
	for _, s := range r.Steps {
		if s.Kind == timeline.StepState && s.From == st && s.To == st {
			return true
		}
	}
	return false
}

func pythonServer(t *testing.T, ns *netnstest.NS, c *capture) {
	t.Helper()
	py := program(t, "python3", "python3")
	dir := t.TempDir()
	// 1000 bytes: the body's size is no version's.
	if err := os.WriteFile(filepath.Join(dir, "index.html"), bytes.Repeat([]byte("x"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(t, ns, c, py, "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, strconv.Itoa(realPort))
}

// curlHeld runs curl in ns with its output a named pipe that nothing
// reads until hold returns: curl, blocked opening it, keeps its socket
// open meanwhile. It returns what curl -w printed.
func curlHeld(t *testing.T, ns *netnstest.NS, url string, hold func()) string {
	t.Helper()
	curl := program(t, "curl", "curl")
	fifo := filepath.Join(t.TempDir(), "body")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-s", "-o", fifo, "-w", curlWrite, url)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	var err error
	ns.Do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	hold()
	drained := make(chan error, 1)
	go func() {
		// Blocks until curl opens the pipe: it has since it got the answer.
		f, err := os.Open(fifo)
		if err == nil {
			_, err = io.Copy(io.Discard, f)
			f.Close()
		}
		drained <- err
	}()
	select {
	case err = <-exited:
		if err != nil {
			t.Fatalf("curl: %v: %s", err, stdout.String())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("curl did not finish within %s", waitTimeout)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("reading curl's output: %v", err)
		}
	case <-time.After(waitTimeout):
		// Let the reader's open() return: a writer of our own, closed.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("curl never opened its output")
	}
	return stdout.String()
}

// curl against python3 -m http.server: the server answers, calls
// shutdown(SHUT_WR) and then close() (FIN_WAIT1 set again). curl is held
// before it closes (the kernel acks the FIN after its delayed-ACK timer),
// so the server's socket is handed, orphaned, to a FIN_WAIT2 timewait
// socket, which curl's FIN then takes to TIME_WAIT. Both orders of close()
// and the peer's FIN happen; holding curl makes it the same every run.
// (output's shutdown_then_close goldens have the other, from its events.)
func TestRealCurlPythonHTTPServer(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	pythonServer(t, ns, c)
	sc := &scenario{cliComm: "curl", srvComm: "python3", cliPrefix: "curl", srvPrefix: "python"}
	out := curlHeld(t, ns, fmt.Sprintf("http://127.0.0.1:%d/", realPort), func() {
		sc.srv = c.record("server", server(realPort))
	})
	sc.cli = c.record("client", client(realPort))
	sc.sent, sc.received = curlSizes(t, out, 1)
	got := render(t, c, sc)
	realGolden(t, "curl_python_http_server", got)
	checkOutput(t, got, "close() after shutdown(): FIN already sent", "peer's close() after shutdown()",
		"TIME_WAIT now: 1, at local 127.0.0.1:8000=1")
	before(t, got, "⇄", "FIN seq=1001 ─ ─│ FIN_WAIT1")
}

// A client that half-closes: it sends its request, shuts down its sending
// side (FIN) and reads the answer to EOF. The server, in CLOSE_WAIT, then
// calls shutdown(SHUT_WR) (LAST_ACK) and close(). On loopback the client's
// ACK of that FIN is most often taken in before shutdown() returns, so the
// socket is closed by then and close() sets no state. When the client's
// socket is busy (its recv() holds it) the FIN waits in its backlog, the
// ACK comes later, and close() finds LAST_ACK and sets it again: the
// kernel's state change is the evidence of which happened, and each order
// has its golden.
func TestRealHalfClosingClient(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	pythonServer(t, ns, c)
	py := program(t, "python3", "python3")
	script := fmt.Sprintf(`import socket
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
s.shutdown(socket.SHUT_WR)
n = 0
while True:
    b = s.recv(65536)
    if not b:
        break
    n += len(b)
s.close()
print(n)
`, realPort)
	out := run(t, ns, false, py, "-c", script)
	sc := &scenario{cliComm: "python3", srvComm: "python3", cliPrefix: "python", srvPrefix: "python"}
	sc.cli, sc.srv = c.exchange(t)
	received, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	sc.sent, sc.received = uint64(len("GET / HTTP/1.0\r\nHost: test\r\n\r\n")), received
	got := render(t, c, sc)
	golden := "half_closing_client"
	if setAgain(sc.srv, timeline.StateLastAck) {
		golden = "half_closing_client_late_ack"
	}
	realGolden(t, golden, got)
	checkOutput(t, got, "half-close: this host shut down its sending side",
		"TIME_WAIT now: 1, to remote 127.0.0.1:8000=1")
}

// A server that resets: it reads the request and closes with SO_LINGER
// {1, 0}, a RST instead of a FIN; curl fails with "connection reset".
func TestRealServerResets(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	py := program(t, "python3", "python3")
	script := fmt.Sprintf(`import socket, struct
l = socket.socket()
l.bind(("127.0.0.1", %d))
l.listen()
c, _ = l.accept()
data = b""
while not data.endswith(b"\r\n\r\n"):
    b = c.recv(65536)
    if not b:
        break
    data += b
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
l.close()
`, realPort)
	serve(t, ns, c, py, "-c", script)
	curl := program(t, "curl", "curl")
	out := run(t, ns, true, curl, "-s", "-o", "/dev/null", "-w", curlWrite, fmt.Sprintf("http://127.0.0.1:%d/", realPort))
	sc := &scenario{cliComm: "curl", srvComm: "python3", cliPrefix: "curl", srvPrefix: "python"}
	sc.cli, sc.srv = c.exchange(t)
	sent, _ := curlSizes(t, out, 1)
	if sc.srv.BytesReceived != sent {
		t.Errorf("the server received %d bytes, curl sent %d", sc.srv.BytesReceived, sent)
	}
	// The listener closes right after the reset: its record is in the
	// summary, so wait for it.
	c.record("listener", func(r *timeline.Connection) bool {
		return r.Role == timeline.RoleListener && r.LPort == realPort
	})
	got := render(t, c, sc)
	realGolden(t, "server_resets", got)
	checkOutput(t, got, "RST received: connection reset by peer", "aborted: this host resets the connection")
}

// nginx with a private configuration in the namespace: one worker, a
// fixed answer, no version in its Server header.
func nginxServer(t *testing.T, ns *netnstest.NS, c *capture) {
	t.Helper()
	nginx := program(t, "nginx", "nginx-light", "/usr/sbin/nginx")
	dir := t.TempDir()
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	server_tokens off;
	keepalive_timeout 60s;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
	server {
		listen 127.0.0.1:%[2]d;
		default_type text/plain;
		location / { return 200 "hello\n"; }
	}
}
`, dir, realPort)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(t, ns, c, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
}

// curl against nginx, one request and then three on one kept-alive
// connection: curl closes first when it is done (it holds TIME_WAIT),
// nginx reads EOF and closes.
func TestRealCurlNginx(t *testing.T) {
	for _, requests := range []int{1, 3} {
		t.Run(strconv.Itoa(requests), func(t *testing.T) {
			ns := netnstest.New(t)
			c := trace(t, ns, tracer.Config{})
			nginxServer(t, ns, c)
			curl := program(t, "curl", "curl")
			args := []string{"-s", "-w", curlWrite}
			for range requests {
				args = append(args, "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/", realPort))
			}
			out := run(t, ns, false, curl, args...)
			sc := &scenario{cliComm: "curl", srvComm: "nginx", cliPrefix: "curl", srvPrefix: "nginx"}
			sc.cli, sc.srv = c.exchange(t)
			sc.sent, sc.received = curlSizes(t, out, requests)
			got := render(t, c, sc)
			name := "curl_nginx"
			if requests > 1 {
				name = "curl_nginx_keepalive"
			}
			realGolden(t, name, got)
			checkOutput(t, got, "TIME_WAIT now: 1, to remote 127.0.0.1:8000=1")
			before(t, got, "⇄", "FIN_WAIT1 │─ ─ FIN")
		})
	}
}
