// What each of the kernel's RST reasons (enum sk_rst_reason, Linux >= 6.10,
// include/net/rstreason.h) means, for the explanation of a connection this
// host reset. A reason the table lacks is quoted by its kernel name.

package timeline

var rstReasonMeanings = map[string]string{
	"NOT_SPECIFIED":            "the kernel gave no specific reason",
	"NO_SOCKET":                "a segment arrived for a connection this host has no socket for",
	"TCP_INVALID_ACK_SEQUENCE": "a segment acknowledged data never sent (invalid ACK sequence)",
	"TCP_RFC7323_PAWS":         "a segment failed the RFC 7323 timestamp check (PAWS)",
	"TCP_TOO_OLD_ACK":          "a segment acknowledged data older than the send window",
	"TCP_ACK_UNSENT_DATA":      "a segment acknowledged data not sent yet",
	"TCP_FLAGS":                "a segment carried flags invalid for the connection's state",
	"TCP_OLD_ACK":              "a segment carried an out-of-window ACK",
	"TCP_ABORT_ON_DATA":        "data arrived after the application closed the socket",
	"TCP_TIMEWAIT_SOCKET":      "a segment reached the connection's TIME_WAIT socket out of order",
	"INVALID_SYN":              "an unexpected SYN arrived on the established connection",
	"TCP_ABORT_ON_CLOSE":       "the application closed the socket with unread data",
	"TCP_ABORT_ON_LINGER":      "close() with SO_LINGER {1, 0}, or the FIN_WAIT2 linger (TCP_LINGER2) ran out",
	"TCP_ABORT_ON_MEMORY":      "too many orphaned sockets (tcp_max_orphans) or TCP memory short (tcp_mem)",
	"TCP_STATE":                "the socket was torn down in a state that needs a RST (tcp_disconnect)",
	"TCP_KEEPALIVE_TIMEOUT":    "keepalive probes went unanswered",
	"TCP_DISCONNECT_WITH_DATA": "the connection was torn down with data still queued",
	"MPTCP_RST_EUNSPEC":        "MPTCP: unspecified error",
	"MPTCP_RST_EMPTCP":         "MPTCP: protocol error",
	"MPTCP_RST_ERESOURCE":      "MPTCP: lack of resources",
	"MPTCP_RST_EPROHIBIT":      "MPTCP: administratively prohibited",
	"MPTCP_RST_EWQ2BIG":        "MPTCP: too much outstanding data",
	"MPTCP_RST_EBADPERF":       "MPTCP: unacceptable performance",
	"MPTCP_RST_EMIDDLEBOX":     "MPTCP: middlebox interference",
	"ERROR":                    "an error on the socket (sk_err)",
}

// appendRSTReason writes "kernel reason NAME: meaning".
func appendRSTReason(b []byte, name string) []byte {
	b = append(b, "RST reason "...)
	b = append(b, name...)
	if m, ok := rstReasonMeanings[name]; ok {
		b = append(b, ": "...)
		b = append(b, m...)
	}
	return b
}
