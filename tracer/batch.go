package tracer

import (
	"fmt"
	"unsafe"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// rawBatch is struct batch from bpf/tcptrace.bpf.c: the queued events of one
// socket, sent when it closes, when its queue fills, or by a flush scan.
type rawBatch = tcptraceBatch

// RawBatchSize is the size of one batch sample.
const RawBatchSize = int(unsafe.Sizeof(rawBatch{}))

// batchMagic is BATCH_MAGIC: a sample of RawBatchSize bytes that does not
// carry it is not a batch.
const batchMagic = 0x74637062

// maxBatch is BATCH_LEN, the entries a batch holds at most.
const maxBatch = len(rawBatch{}.Ev)

// IsBatch tells a batch sample from an event sample.
func IsBatch(sample []byte) bool { return len(sample) == RawBatchSize }

// DecodeBatch unpacks a batch into the events the kernel side would have
// sent one by one, and hands each to fn in order; e is reused. The fields
// a batch holds once (addresses, owner, cgroup, uid) are the socket's when
// the batch was sent; the local port and everything that changes from one
// event to the next come from each entry.
func (d *Decoder) DecodeBatch(sample []byte, e *timeline.Event, fn func(*timeline.Event)) error {
	if len(sample) != RawBatchSize {
		return fmt.Errorf("%w: batch of %d bytes, want %d", ErrMalformed, len(sample), RawBatchSize)
	}
	var r rawBatch
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), RawBatchSize), sample)
	if r.Magic != batchMagic {
		return fmt.Errorf("%w: batch magic %#x", ErrMalformed, r.Magic)
	}
	if r.N == 0 || int(r.N) > maxBatch {
		return fmt.Errorf("%w: batch of %d entries", ErrMalformed, r.N)
	}
	laddr, raddr, ok := addrs(r.Family, &r.Saddr, &r.Daddr)
	if !ok {
		return fmt.Errorf("%w: address family %d", ErrMalformed, r.Family)
	}
	for i := range r.N {
		if t := r.Ev[i].Type; t < uint8(timeline.EventState) || t > uint8(timeline.EventError) ||
			t == uint8(timeline.EventSynAckRetransmit) {
			return fmt.Errorf("%w: batch entry of type %d", ErrMalformed, t)
		}
	}
	comm := d.comm(&r.Comm)
	for i := range r.N {
		ent := &r.Ev[i]
		*e = timeline.Event{
			Time:   int64(ent.TsNs) + d.MonoToUnix,
			Cookie: r.Cookie,
			LAddr:  laddr,
			RAddr:  raddr,
			LPort:  ent.Sport,
			RPort:  r.Dport,
			NetNS:  r.Netns,
			Cgroup: r.Cgroup,
		}
		d.entry(e, ent.Type, ent.Oldstate, ent.Newstate, ent.Flags, ent.Reason)
		if ent.Flags&uint8(tcptraceEventFlagsEVENT_F_OWNER) != 0 {
			e.PID, e.Comm = r.Pid, comm
		}
		if e.Type == timeline.EventState {
			// As the one-by-one path: uid on state events, and the
			// tcp_sock figures at ESTABLISHED and CLOSE.
			e.UID = r.Uid
			switch e.NewState {
			case timeline.StateEstablished:
				d.setEstFigures(e, &r.Established)
			case timeline.StateClose:
				d.setFigures(e, &r.Closed, true)
			}
		}
		fn(e)
	}
	return nil
}
