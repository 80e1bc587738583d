package metrics

import (
	"testing"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The cost a record adds when --metrics is on: label values and one series
// lookup per family.
func BenchmarkConnection(b *testing.B) {
	m, err := New(Config{MaxSeries: 10000, SeriesTTL: 600e9})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*timeline.Connection, 64)
	for i := range recs {
		c := conn(timeline.RoleClient, timeline.OutcomeClosed, "closed_local", 40000, uint16(8000+i%16), 0)
		if i%2 == 1 {
			c.Role, c.LPort, c.RPort = timeline.RoleServer, 8080, 40000
		}
		c.Handshake, c.HandshakeRTT = 50_000, 20
		recs[i] = c
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Connection(recs[i%len(recs)])
	}
}
