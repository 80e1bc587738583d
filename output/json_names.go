package output

import (
	"net/netip"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The names of the timeline's enums as JSON strings, quoted once at start-up
// instead of scanned for characters to escape each time: a connection
// record writes about twenty of them. Each table holds what String returns
// for the values known when it is built; any other value goes through
// String and appendString as before, so the bytes are the same either way.

var (
	// jsonStates covers every State: the type is a byte.
	jsonStates    = quoteNames(256, func(i int) string { return timeline.State(i).String() })
	jsonRoles     = quoteNames(4, func(i int) string { return timeline.Role(i).String() })
	jsonOutcomes  = quoteNames(len(timeline.Outcomes()), func(i int) string { return timeline.Outcome(i).String() })
	jsonClosers   = quoteNames(4, func(i int) string { return timeline.Closer(i).String() })
	jsonStepKinds = quoteNames(int(timeline.StepError)+1, func(i int) string { return timeline.StepKind(i).String() })
)

func quoteNames(n int, name func(int) string) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = string(appendString(nil, name(i)))
	}
	return names
}

func appendState(b []byte, s timeline.State) []byte { return append(b, jsonStates[s]...) }

func appendRole(b []byte, r timeline.Role) []byte {
	if int(r) < len(jsonRoles) {
		return append(b, jsonRoles[r]...)
	}
	return appendString(b, r.String())
}

func appendOutcomeName(b []byte, o timeline.Outcome) []byte {
	if int(o) < len(jsonOutcomes) {
		return append(b, jsonOutcomes[o]...)
	}
	return appendString(b, o.String())
}

func appendCloser(b []byte, c timeline.Closer) []byte {
	if int(c) < len(jsonClosers) {
		return append(b, jsonClosers[c]...)
	}
	return appendString(b, c.String())
}

func appendStepKind(b []byte, k timeline.StepKind) []byte {
	if int(k) < len(jsonStepKinds) {
		return append(b, jsonStepKinds[k]...)
	}
	return appendString(b, k.String())
}

// familyField is the "family" member, as Connection.Family and
// Event.Family name it.
func familyField(laddr netip.Addr) string {
	if laddr.Is4() {
		return `,"family":"ipv4"`
	}
	return `,"family":"ipv6"`
}

// jsonRetransKinds and jsonRetransKeys: the members of
// "retransmits_by_kind", in the timeline's order, each key with what comes
// before it (`,"retransmits_by_kind":{"rto":`, `,"fast":`, ...).
var jsonRetransKinds, jsonRetransKeys = retransKeys()

// jsonNoRetrans is "retransmits_by_kind" with every count 0, in one piece.
var jsonNoRetrans = func() string {
	s := ""
	for _, k := range jsonRetransKeys {
		s += k + "0"
	}
	return s + "}"
}()

func retransKeys() ([]timeline.RetransKind, []string) {
	kinds := timeline.RetransKinds()
	keys := make([]string, len(kinds))
	for i, k := range kinds {
		sep := ","
		if i == 0 {
			sep = `,"retransmits_by_kind":{`
		}
		keys[i] = sep + string(appendString(nil, k.String())) + ":"
	}
	return kinds, keys
}
