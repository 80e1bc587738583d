// Counters of what the correlator saw: outcomes, reasons, failures per
// remote endpoint and the handshake-time histogram.

package timeline

import (
	"math"
	"slices"
)

// Stats counts what the correlator saw and did.
type Stats struct {
	Events      uint64
	Connections uint64 // records emitted
	ByOutcome   [numOutcomes]uint64
	// ByReason counts records by Reason.
	ByReason map[string]uint64
	Evicted  uint64
	// Stray counts events for sockets whose record had already ended, such
	// as a RST sent by a timewait socket long after its connection closed.
	Stray uint64
	// ResetsNoSocket counts RSTs the stack sent with no socket: a packet to
	// a port nothing listens on.
	ResetsNoSocket uint64
	Alerts         uint64
	// OrphansUnwatched counts orphaned FIN_WAIT2 sockets not followed
	// because the table was full or scans can't see their namespace.
	OrphansUnwatched uint64
	// Handshakes is a histogram of client handshake times (see Percentile).
	Handshakes Histogram
	// failures counts failed connections per remote endpoint (bounded).
	failures map[Endpoint]uint64

	// Drops counts TCP packets the kernel dropped, by enum skb_drop_reason
	// (bounded by the kernel's reasons).
	Drops map[string]uint64
	// SyscallErrors counts failed connect(), bind(), listen() and accept()
	// calls by call and errno.
	SyscallErrors map[SyscallErrno]uint64
	// ListenDrops: SYNs and final ACKs that listeners dropped (growth of
	// their sk_drops between two looks).
	ListenDrops uint64
	// NotesLost: drops or errors not kept for their record: too many
	// sockets with notes at once (host.go).
	NotesLost uint64
}

// SyscallErrno is a call and the errno it failed with.
type SyscallErrno struct {
	Syscall Syscall
	Errno   uint16
}

func (s *Stats) addDrop(reason string) {
	if s.Drops == nil {
		s.Drops = make(map[string]uint64)
	}
	s.Drops[reason]++
}

// TopFailures returns up to n remote endpoints with the most failed
// connections (any outcome but closed and open), most first. The clients of
// accepted connections are counted per address, with port 0.
func (s *Stats) TopFailures(n int) []EndpointCount {
	return topN(s.failures, n)
}

func topN(m map[Endpoint]uint64, n int) []EndpointCount {
	out := make([]EndpointCount, 0, len(m))
	for e, c := range m {
		out = append(out, EndpointCount{e, c})
	}
	slices.SortFunc(out, func(a, b EndpointCount) int {
		if a.Count != b.Count {
			return int(b.Count) - int(a.Count)
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out[:min(n, len(out))]
}

// maxFailureEndpoints bounds the per-endpoint failure counts.
const maxFailureEndpoints = 4096

// Histogram counts durations in logarithmic buckets (about 4.5% wide), from
// 1 µs to over an hour, in constant memory.
type Histogram struct {
	buckets [histBuckets]uint64
	n       uint64
}

const (
	histBase    = 1.045
	histBuckets = 512
)

// Add counts one duration in ns.
func (h *Histogram) Add(ns int64) {
	i := 0
	if us := float64(ns) / 1e3; us > 1 {
		i = min(int(math.Log(us)/math.Log(histBase))+1, histBuckets-1)
	}
	h.buckets[i]++
	h.n++
}

// Count is how many durations were added.
func (h *Histogram) Count() uint64 { return h.n }

// Percentile returns the p-th percentile (0-100) in ns, as the upper bound
// of its bucket; 0 when empty.
func (h *Histogram) Percentile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	var seen uint64
	for i, b := range h.buckets {
		seen += b
		if seen >= max(rank, 1) {
			return int64(math.Pow(histBase, float64(i)) * 1e3)
		}
	}
	return 0
}
