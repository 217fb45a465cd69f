package natsx

import (
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RepublishHeaders copies the headers of a stored message for publishing it
// again (dead-letter retry, replay), without those that must not travel:
// its dedupe id (the caller sets a new one), publish expectations (they held
// for the original publish only) and headers the server sets on delivery.
// Trace context and orgsync headers are kept, so the copy joins the
// original's trace and decodes the same way.
func RepublishHeaders(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		switch {
		case k == jetstream.MsgIDHeader, strings.HasPrefix(k, "Nats-Expected-"),
			k == "Nats-Stream", k == "Nats-Sequence", k == "Nats-Time-Stamp", k == "Nats-Subject",
			k == "Nats-Pin-Id", k == "Nats-Num-Pending", k == "Nats-Last-Sequence":
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}
