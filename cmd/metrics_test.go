package cmd_test

// --metrics end to end: the real binary traces real connections in a
// private namespace, and a real Prometheus (Debian's prometheus package)
// scrapes it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/netnstest"
)

// lookTool finds a Prometheus binary; skipped without it, except in CI.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: CI must install it (scripts/install-deps.sh installs the prometheus package)", name)
		}
		t.Skipf("%s not found (apt install prometheus)", name)
	}
	return p
}

// freeAddr returns a loopback address with a port free now. Another
// process could take it before it is used: the test would then fail saying
// the port is in use, not hang.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// poll calls cond every interval until it returns true or d passes; it
// returns cond's last say.
func poll(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval) // polling a condition, with a deadline
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(u string) (int, []byte, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// prometheus is a Prometheus server scraping one target every second.
type prometheus struct {
	addr string
	cmd  *exec.Cmd
	log  bytes.Buffer
}

func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin := lookTool(t, "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"+
		"  - job_name: tcptrace\n    static_configs:\n      - targets: ['%s']\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{addr: freeAddr(t)}
	p.cmd = exec.Command(bin, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", p.addr, "--log.level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-exited
	})
	ready := poll(20*time.Second, 100*time.Millisecond, func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", p.log.String())
		default:
		}
		code, _, err := httpGet("http://" + p.addr + "/-/ready")
		return err == nil && code == http.StatusOK
	})
	if !ready {
		t.Fatalf("prometheus not ready within 20 s: %s", p.log.String())
	}
	return p
}

// query runs an instant query and returns its raw JSON and the vector's
// samples, keyed by the values of the labels named in by, joined with ",".
func (p *prometheus) query(t *testing.T, q string, by ...string) (string, map[string]string) {
	t.Helper()
	code, body, err := httpGet("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil || code != http.StatusOK {
		t.Fatalf("query %s: %d %v %s", q, code, err, body)
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	out := make(map[string]string)
	for _, s := range r.Data.Result {
		var key []string
		for _, l := range by {
			key = append(key, s.Metric[l])
		}
		out[strings.Join(key, ",")] = s.Value[1].(string)
	}
	return string(body), out
}

// TestMetricsScrapedByPrometheus: tcptrace -o json --metrics traces a clean
// close, a refused connect, an abortive close, a SYN timeout and a server
// left in CLOSE_WAIT; a real Prometheus scraping it every second ends up
// with exactly those records, socket states and stuck connections, while
// the JSON stream goes on; the exposition passes promtool's lint.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	ns := netnstest.New(t)
	promtool := lookTool(t, "promtool")
	// One SYN retry: connect() gives up after 1 s + 2 s.
	ns.Sysctl(t, "net/ipv4/tcp_syn_retries", "1")
	ns.Sysctl(t, "net/ipv4/tcp_syn_linear_timeouts", "0") // Linux >= 6.15; absent before
	// A listener older than tcptrace: its first scan counts it.
	var held net.Listener
	var err error
	ns.Do(func() { held, err = net.Listen("tcp", "127.0.0.1:9000") })
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	metricsAddr := freeAddr(t)
	tr := start(t, "-o", "json", "--netns", ns.Path, "--metrics", metricsAddr, "--stuck-after", "1s")
	prom := startPrometheus(t, metricsAddr)

	// The namespace is the test's own: fixed ports, outside the ephemeral
	// range, name the services in the port label.
	connect(t, ns, "127.0.0.1:8080") // a clean close: client, server, listener
	ns.Do(func() {
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:9999"); err == nil {
			ln.Close() // refused: nothing listens there any more
			_, err = net.Dial("tcp", "127.0.0.1:9999")
		}
	})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial to a closed port: %v", err)
	}
	abortiveClose(t, ns, "127.0.0.1:8081") // the client closes with SO_LINGER {1, 0}
	// A server that never closes what its client closed: CLOSE_WAIT here,
	// an orphaned FIN_WAIT2 on the client.
	var cli net.Conn
	ns.Do(func() { cli, err = net.Dial("tcp", "127.0.0.1:9000") })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := held.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli.Close()
	// SYNs to 7000 dropped: connect() times out.
	ns.Do(func() {
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:7000"); err == nil {
			ln.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	undo := ns.DropSYNs(t, 7000)
	defer undo()
	ns.Do(func() { _, err = net.DialTimeout("tcp", "127.0.0.1:7000", 10*time.Second) })
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("dial with SYNs dropped: %v, want a timeout", err)
	}

	want := map[string]string{
		"client,closed": "2", "server,closed": "1",
		"listener,closed":    "4", // 8080, 9999, 8081, 7000; 9000 is still open
		"client,refused":     "1",
		"client,reset_local": "1", "server,reset_by_peer": "1",
		"client,timeout": "1",
	}
	const byOutcome = `sum by (role, outcome) (tcptrace_connections_total{job="tcptrace"})`
	var raw string
	var got map[string]string
	if !poll(20*time.Second, 250*time.Millisecond, func() bool {
		raw, got = prom.query(t, byOutcome, "role", "outcome")
		return maps.Equal(got, want)
	}) {
		t.Fatalf("Prometheus has %v, want %v; tcptrace stderr: %s", got, want, tr.stderr.String())
	}
	t.Logf("%s:\n%s", byOutcome, raw)
	// The CLOSE_WAIT server and the orphaned client are held past 1 s.
	const stuck = `tcptrace_stuck_connections{state=~"CLOSE_WAIT|FIN_WAIT2"}`
	wantStuck := map[string]string{"CLOSE_WAIT": "1", "FIN_WAIT2": "1"}
	if !poll(10*time.Second, 250*time.Millisecond, func() bool {
		raw, got = prom.query(t, stuck, "state")
		return maps.Equal(got, wantStuck)
	}) {
		t.Errorf("%s: %v, want %v", stuck, got, wantStuck)
	}
	t.Logf("%s:\n%s", stuck, raw)

	// The other families, as Prometheus has them now.
	for _, c := range []struct {
		q    string
		by   []string
		want map[string]string
	}{
		{`sum by (role, port) (tcptrace_connections_total{role!="listener", outcome!="closed"})`, []string{"role", "port"},
			map[string]string{"client,9999": "1", "client,8081": "1", "server,8081": "1", "client,7000": "1"}},
		{`sum by (direction, reason) (tcptrace_resets_total)`, []string{"direction", "reason"},
			map[string]string{"sent,linger_abort": "1", "received,peer_reset": "1", "received,nothing_listening": "1"}},
		{`sum by (port) (tcptrace_syn_retransmits_total)`, []string{"port"},
			map[string]string{"8080": "0", "9999": "0", "8081": "0", "9000": "0", "7000": "1"}},
		{`sum(tcptrace_connect_duration_seconds_count)`, nil, map[string]string{"": "3"}},
		{`sum by (role) (tcptrace_handshake_rtt_seconds_count)`, []string{"role"}, map[string]string{"client": "3", "server": "2"}},
		{`tcptrace_alerts_total{kind="close_wait"} > 0`, nil, map[string]string{"": "1"}},
		{`tcptrace_sockets{state="LISTEN"}`, nil, map[string]string{"": "1"}},
		{`tcptrace_lost_events_total + tcptrace_decode_errors_total`, nil, map[string]string{"": "0"}},
		{`count(tcptrace_build_info == 1)`, nil, map[string]string{"": "1"}},
		{`up{job="tcptrace"}`, nil, map[string]string{"": "1"}},
	} {
		var raw string
		var got map[string]string
		// The socket gauges are the last scan's: one that ran while a
		// short-lived listener above still listened counts it until the
		// next scan (a second at most with --stuck-after 1s).
		wait := time.Duration(0)
		if strings.HasPrefix(c.q, "tcptrace_sockets") {
			wait = 10 * time.Second
		}
		poll(wait, 250*time.Millisecond, func() bool {
			raw, got = prom.query(t, c.q, c.by...)
			if c.q == `tcptrace_alerts_total{kind="close_wait"} > 0` && len(got) == 1 {
				got = map[string]string{"": "1"} // how many repeats is timing; that it fired is not
			}
			return maps.Equal(got, c.want)
		})
		if !maps.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v\n%s", c.q, got, c.want, raw)
		}
	}

	code, body, err := httpGet("http://" + metricsAddr + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("/metrics (tcptrace_ lines):\n%s", grepLines(string(body), "tcptrace_"))
	if code, body, _ := httpGet("http://" + metricsAddr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}

	// The JSON stream had every record; SIGTERM ends it all with 0, the
	// open ones (the CLOSE_WAIT server, the held listener) flushed.
	rest, exit := tr.stop(syscall.SIGTERM)
	if exit != 0 {
		t.Fatalf("exit %d after SIGTERM: %s", exit, tr.stderr.String())
	}
	records := 0
	for _, l := range rest {
		if strings.Contains(l, `"type":"connection"`) {
			records++
		}
	}
	if records != 13 {
		t.Errorf("%d connection records on stdout, want 13:\n%s", records, strings.Join(rest, "\n"))
	}
	if _, _, err := httpGet("http://" + metricsAddr + "/metrics"); err == nil {
		t.Error("the metrics server still answers after tcptrace exited")
	}
}

// abortiveClose makes a connection in ns and closes its client with
// SO_LINGER {1, 0}: RST instead of FIN.
func abortiveClose(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	c, s, _ := connected(t, ns, addr)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	// The server sees the RST.
	if _, err := s.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("server read after the client's RST: %v", err)
	}
	s.Close()
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// -o none: nothing on stdout, not even the summary; the metrics count.
func TestOutputNone(t *testing.T) {
	ns := netnstest.New(t)
	addr := freeAddr(t)
	tr := start(t, "-o", "none", "--netns", ns.Path, "--metrics", addr)
	connect(t, ns, "127.0.0.1:0")
	var body []byte
	if !poll(10*time.Second, 100*time.Millisecond, func() bool {
		_, body, _ = httpGet("http://" + addr + "/metrics")
		return strings.Contains(string(body), `outcome="closed"`) && strings.Contains(string(body), `role="server"`)
	}) {
		t.Fatalf("no closed records in /metrics:\n%s", grepLines(string(body), "tcptrace_connections"))
	}
	rest, code := tr.stop(syscall.SIGTERM)
	if code != 0 || len(rest) != 0 {
		t.Errorf("exit %d, stdout %q; want 0 and nothing", code, rest)
	}
}

func TestMetricsFlagErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--metrics", "9464"}, 2, "want host:port"},
		{[]string{"--metrics", "127.0.0.1:0"}, 2, "port must be a number from 1 to 65535"},
		{[]string{"--metrics", "example.com:9464"}, 2, "must be an IP address"},
		{[]string{"--metrics", ":9464", "--metrics-labels", "pid"}, 2, `unknown label "pid"`},
		{[]string{"--metrics", ":9464", "--metrics-max-series", "0"}, 2, "at least 1"},
		{[]string{"--metrics", ":9464", "--metrics-series-ttl", "0s"}, 2, "must be positive"},
		{[]string{"-o", "none"}, 2, "use it with --metrics"},
		{[]string{"--metrics", busy.Addr().String()}, 1, "address already in use"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			code := exitCode(cmd.Run())
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}
