package output

import (
	"maps"
	"slices"
	"strconv"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The JSON of what the host did to a connection (schema version 3): its
// packets the kernel dropped here, a system call that failed, a local
// listener's full queue, the socket's own settings; and the fields of the
// host-side alerts. Documented in docs/json-schema.md.

func appendHostFields(b []byte, c *timeline.Connection) []byte {
	if len(c.Drops) == 0 && c.SyscallErrno == 0 && c.PortUse.Range <= 0 && !c.PortUse.Known &&
		!c.ListenerFull.Known && !c.NeverAccepted {
		b = append(b, quietHostFields...)
	} else {
		b = appendHostEvents(b, c)
	}
	b = appendUintField(b, `,"sock_syn_retries":`, uint64(c.SockSynRetries))
	b = appendUintField(b, `,"user_timeout_ms":`, uint64(c.UserTimeout))
	return appendSocketFields(b, c)
}

// quietHostFields are what appendHostEvents writes for a connection the
// host did nothing to, the commonest, in one piece.
const quietHostFields = `,"drops":{},"syscall":null,"syscall_errno":null,"local_ports":null,"listener_full":null,` +
	`"never_accepted":false`

// appendHostEvents writes the drops, the failed call, the local ports and
// the full listener, and whether the socket was never accepted.
func appendHostEvents(b []byte, c *timeline.Connection) []byte {
	b = append(b, `,"drops":{`...)
	for i, d := range c.Drops {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, d.Reason)
		b = append(b, ':')
		b = appendInt(b, int64(d.Count))
	}
	b = append(b, '}')
	if c.SyscallErrno == 0 {
		b = append(b, `,"syscall":null,"syscall_errno":null`...)
	} else {
		b = appendStringField(b, `,"syscall":`, c.Syscall.String())
		b = appendStringField(b, `,"syscall_errno":`, timeline.ErrnoName(c.SyscallErrno))
	}
	if u := c.PortUse; u.Range > 0 || u.Known || u.NotRescanned {
		b = append(b, `,"local_ports":{"range":`...)
		b = strconv.AppendInt(b, int64(u.Range), 10)
		if u.Known {
			b = appendUintField(b, `,"in_use":`, uint64(u.InUse))
			b = appendUintField(b, `,"time_wait":`, uint64(u.TimeWait))
		}
		if u.NotRescanned {
			b = appendBoolField(b, "not_rescanned", true)
		}
		b = append(b, '}')
	} else {
		b = append(b, `,"local_ports":null`...)
	}
	if lf := c.ListenerFull; lf.Known {
		b = append(b, `,"listener_full":{`...)
		b = append(b, `"addr":`...)
		b = appendString(b, lf.Addr.String())
		b = appendUintField(b, `,"port":`, uint64(lf.Port))
		b = appendUintField(b, `,"dropped":`, lf.Dropped)
		b = appendQueue(b, lf.Queue)
		b = append(b, '}')
	} else {
		b = append(b, `,"listener_full":null`...)
	}
	return appendBoolField(b, `,"never_accepted":`, c.NeverAccepted)
}

// appendSocketFields writes what the socket knew: sequence numbers
// (absolute, as the wire carries them), retransmissions by kind, and
// tcp_info at the end.
func appendSocketFields(b []byte, c *timeline.Connection) []byte {
	seq := func(b []byte, key string, v uint32, ok bool) []byte {
		if !ok {
			return appendNull(appendKey(b, key))
		}
		return appendUintField(b, key, uint64(v))
	}
	if sq := &c.Seq; !sq.HasISN && !sq.HasFIN && !sq.HasPeerFIN {
		b = append(b, `,"isn":null,"peer_isn":null,"fin_seq":null,"peer_fin_seq":null`...)
	} else {
		b = seq(b, `,"isn":`, sq.ISN, sq.HasISN)
		b = seq(b, `,"peer_isn":`, sq.PeerISN, sq.HasISN)
		b = seq(b, `,"fin_seq":`, sq.FIN, sq.HasFIN)
		b = seq(b, `,"peer_fin_seq":`, sq.PeerFIN, sq.HasPeerFIN)
	}
	if c.RetransByKind == [len(c.RetransByKind)]int{} {
		b = append(b, jsonNoRetrans...)
	} else {
		for i, k := range jsonRetransKinds {
			b = append(b, jsonRetransKeys[i]...)
			b = appendInt(b, int64(c.RetransByKind[k]))
		}
		b = append(b, '}')
	}
	b = appendUintField(b, `,"rto_backoff":`, uint64(c.MaxBackoff))
	in := &c.Info
	if !in.End {
		return append(b, `,"tcp_info":null`...)
	}
	b = append(b, `,"tcp_info":{"cwnd":`...)
	b = appendUint(b, uint64(in.Cwnd))
	if in.Ssthresh >= 0x7fffffff { // TCP_INFINITE_SSTHRESH: slow start never ended
		b = append(b, `,"ssthresh":null`...)
	} else {
		b = appendUintField(b, `,"ssthresh":`, uint64(in.Ssthresh))
	}
	if in.MinRTT == noRTT {
		b = append(b, `,"min_rtt_ms":null`...)
	} else {
		b = appendMillisField(b, `,"min_rtt_ms":`, int64(in.MinRTT)*1e3)
	}
	b = appendUintField(b, `,"delivered":`, uint64(in.Delivered))
	b = appendUintField(b, `,"lost":`, uint64(in.Lost))
	b = appendUintField(b, `,"retransmitted":`, uint64(c.SegsRetrans))
	b = appendUintField(b, `,"reordering":`, uint64(in.Reordering))
	b = appendUintField(b, `,"snd_mss":`, uint64(in.SndMSS))
	b = appendUintField(b, `,"rcv_mss":`, uint64(in.RcvMSS))
	b = appendUintField(b, `,"dsack_dups":`, uint64(in.DSACKDups))
	b = appendUintField(b, `,"window_probes":`, uint64(in.Probes))
	for _, f := range []struct {
		key string
		ns  int64
	}{{`,"busy_ms":`, in.Busy}, {`,"rwnd_limited_ms":`, in.RwndLimited}, {`,"sndbuf_limited_ms":`, in.SndbufLimited}} {
		if f.ns < 0 {
			b = appendNull(appendKey(b, f.key))
		} else {
			b = appendMillisField(b, f.key, f.ns)
		}
	}
	return append(b, '}')
}

// appendQueue writes "queue":{"len":2,"max":1,"drops":5}.
func appendQueue(b []byte, q timeline.Queue) []byte {
	b = append(b, `,"queue":{"len":`...)
	b = strconv.AppendUint(b, uint64(q.Len), 10)
	b = appendUintField(b, `,"max":`, uint64(q.Max))
	b = appendUintField(b, `,"drops":`, uint64(q.Drops))
	return append(b, '}')
}

func appendHostAlertFields(b []byte, a *timeline.Alert) []byte {
	switch a.Kind {
	case timeline.AlertListenOverflow:
		b = appendQueue(b, a.Queue)
		b = appendUintField(b, `,"dropped":`, a.Dropped)
		if a.Somaxconn >= 0 {
			b = appendUintField(b, `,"somaxconn":`, uint64(a.Somaxconn))
		}
		b = append(b, `,"accept_errors":{`...)
		for i, ec := range a.AcceptErrors {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, timeline.ErrnoName(ec.Errno))
			b = append(b, ':')
			b = strconv.AppendUint(b, ec.Count, 10)
		}
		b = append(b, '}')
	case timeline.AlertPortInUse, timeline.AlertSyscallError:
		b = appendStringField(b, `,"syscall":`, a.Syscall.String())
		b = appendStringField(b, `,"errno":`, timeline.ErrnoName(a.Errno))
		b = appendUintField(b, `,"count":`, a.Count)
		if a.Queue.Known {
			b = appendQueue(b, a.Queue)
		}
		if a.Kind == timeline.AlertPortInUse && a.Holders.Known {
			b = append(b, `,"holders":{"listeners":[`...)
			for i, l := range a.Holders.Listeners {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"cookie":`...)
				b = strconv.AppendUint(b, l.Cookie, 10)
				b = appendUintField(b, `,"pid":`, uint64(l.PID))
				b = appendStringField(b, `,"comm":`, l.Comm)
				b = append(b, '}')
			}
			b = append(b, ']')
			b = appendUintField(b, `,"time_wait":`, uint64(a.Holders.TimeWait))
			b = appendUintField(b, `,"other":`, uint64(a.Holders.Other))
			b = append(b, '}')
		}
		if a.Kind == timeline.AlertPortInUse && a.Holders.NotRescanned {
			b = appendBoolField(b, "not_rescanned", true)
		}
	}
	return b
}

// appendHostSummary writes the summary's host-side counts, keys sorted.
func appendHostSummary(b []byte, s *Summary) []byte {
	b = append(b, `,"drops":{`...)
	for i, r := range slices.Sorted(maps.Keys(s.Drops)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, r)
		b = append(b, ':')
		b = strconv.AppendUint(b, s.Drops[r], 10)
	}
	b = append(b, `},"syscall_errors":{`...)
	keys := make([]string, 0, len(s.SyscallErrors))
	counts := make(map[string]uint64, len(s.SyscallErrors))
	for k, n := range s.SyscallErrors {
		name := k.Syscall.String() + " " + timeline.ErrnoName(k.Errno)
		keys = append(keys, name)
		counts[name] += n
	}
	slices.Sort(keys)
	for i, k := range slices.Compact(keys) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = strconv.AppendUint(b, counts[k], 10)
	}
	b = append(b, '}')
	b = appendUintField(b, `,"listen_drops":`, s.ListenDrops)
	b = appendUintField(b, `,"notes_lost":`, s.NotesLost)
	return appendUintField(b, `,"retransmits_failed":`, s.RetransmitsFailed)
}
