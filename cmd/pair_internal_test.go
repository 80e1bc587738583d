package cmd

import (
	"testing"

	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// drawn records what a writer was handed. The ladder writer that draws
// pairs lives on another branch: this stands in for it (and for a writer
// without pairs), to test what the session hands each.
type drawn struct {
	output.Writer             // not called
	got           [][2]uint64 // cookie, and the peer's when drawn as a pair
}

func (d *drawn) Connection(c *timeline.Connection) error {
	d.got = append(d.got, [2]uint64{c.Cookie, 0})
	return nil
}

type pairDrawn struct{ *drawn }

func (d pairDrawn) ConnectionPair(local, peer *timeline.Connection) error {
	d.got = append(d.got, [2]uint64{local.Cookie, peer.Cookie})
	return nil
}

func testPair() (server, client *timeline.Connection) {
	server = &timeline.Connection{Cookie: 2, Role: timeline.RoleServer, Outcome: timeline.OutcomeClosed, PeerCookie: 1}
	client = &timeline.Connection{Cookie: 1, Role: timeline.RoleClient, Outcome: timeline.OutcomeClosed, PeerCookie: 2}
	return server, client
}

func TestSessionHandsPairs(t *testing.T) {
	server, client := testPair()

	plain := &drawn{}
	s := &session{out: plain, stop: func() {}}
	s.paired(server, client)
	if len(plain.got) != 2 || plain.got[0][0] != 2 || plain.got[1][0] != 1 || s.emitted != 2 {
		t.Errorf("a writer without pairs got %v", plain.got)
	}

	ladder := &drawn{}
	s = &session{out: pairDrawn{ladder}, stop: func() {}}
	s.paired(server, client)
	s.paired(client, nil)
	if len(ladder.got) != 2 || ladder.got[0] != [2]uint64{1, 2} || ladder.got[1] != [2]uint64{1, 0} {
		t.Errorf("a pair writer got %v; want the pair (client first), then a record alone", ladder.got)
	}

	// --only-anomalies: a pair is drawn when either end is anomalous.
	ladder = &drawn{}
	s = &session{out: pairDrawn{ladder}, stop: func() {}, onlyAnomalies: true}
	s.paired(server, client)
	server.Outcome = timeline.OutcomeResetLocal
	s.paired(server, client)
	if len(ladder.got) != 1 || ladder.got[0] != [2]uint64{1, 2} {
		t.Errorf("--only-anomalies: got %v, want only the pair with an anomalous end", ladder.got)
	}

	// --count: a pair counts two records, and stops the session once
	// the count is reached.
	stopped := false
	ladder = &drawn{}
	s = &session{out: pairDrawn{ladder}, stop: func() { stopped = true }, limit: 2}
	s.paired(server, client)
	s.paired(server, client)
	if len(ladder.got) != 1 || !stopped {
		t.Errorf("--count 2: got %v, stopped %v", ladder.got, stopped)
	}
}
