package tracer_test

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer"
)

// Both ends of a real loopback connection, drawn as one ladder: each end's
// states are its own record's, not inferred. The client sends and closes
// first, the server reads to EOF, answers and closes.
func TestLadderPairReal(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	cli, srv, port := pair(t, ns, "127.0.0.1:0")
	if _, err := cli.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	cr := c.record("client", client(port))
	readEOF(t, srv)
	srv.Close()
	sr := c.record("server", server(port))

	var buf bytes.Buffer
	w := output.NewLadder(&buf, time.UTC, output.Options{}, output.LadderOptions{})
	if err := w.ConnectionPair(cr, sr); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	t.Logf("\n%s", buf.String())
	d := buf.String()
	for _, want := range []string{
		"SYN_SENT │─ ─ SYN",
		"│ LISTEN",                       // the server's own state, beside its line
		"▶│ CLOSE_WAIT",                  // our FIN, and the server's real CLOSE_WAIT
		"◀─ ─ ─ ─",                       // segments inferred, dashed
		"FIN seq=1 ack=20 ─ ─│ LAST_ACK", // the server's FIN, after the 18 B and FIN it read
		"│ CLOSE",
		"18 B sent", // the request
	} {
		if !strings.Contains(d, want) {
			t.Errorf("no %q in the diagram", want)
		}
	}
	// Each segment once: one SYN, one SYN+ACK, two FINs.
	var arrows strings.Builder
	for _, line := range strings.Split(d, "\n") {
		if strings.Contains(line, "│") {
			arrows.WriteString(line + "\n")
		}
	}
	for seg, n := range map[string]int{" SYN ": 1, " SYN+ACK ": 1, " FIN ": 2} {
		if got := strings.Count(arrows.String(), seg); got != n {
			t.Errorf("%q drawn %d times, want %d", seg, got, n)
		}
	}
	for _, line := range strings.Split(d, "\n") {
		if utf8.RuneCountInString(line) > 80 {
			t.Errorf("wider than 80 columns: %q", line)
		}
	}
}
