package sqlstore

import (
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// MySQL and MariaDB refuse a packet larger than max_allowed_packet (16 MiB
// by default on MariaDB, 64 MiB on MySQL 8): a statement sent whole, or one
// parameter sent in pieces. The bus reads it in NewEventBus, refuses a
// MaxPayloadBytes whose event cannot fit, refuses an event whose metadata
// makes it too large, and cuts multi-event INSERTs to fit.
const (
	// rowOverhead bounds what a row costs beyond its values: placeholders
	// and the clock expression in the statement text, and the parameter
	// headers of the binary protocol.
	rowOverhead = 256
	// packetHeadroom is kept free in every packet for the statement's own
	// text and headers.
	packetHeadroom = 8 << 10
	// maxFixedBytes is the most an event's ID, type and sender take.
	maxFixedBytes = 64 + 255 + 255
)

// setPacketLimit sets packetBytes and packetBudget from the server's limit
// (MySQL's Init) and checks maxPayload against them; other databases take
// 1 GB parameters and need no limit below MaxPayloadBytes' 64 MiB.
func (s *base) setPacketLimit(limit, maxPayload int) error {
	s.packetBytes = limit
	s.packetBudget = s.packetBytes - packetHeadroom
	if need := maxPayload + maxFixedBytes + rowOverhead; need > s.packetBudget {
		return fmt.Errorf("%w: MaxPayloadBytes %d cannot fit the server's max_allowed_packet of %d bytes: "+
			"set it to at most %d, or raise max_allowed_packet (and the DSN's maxAllowedPacket if set)",
			store.ErrInvalidOption, maxPayload, s.packetBytes, max(0, s.packetBudget-maxFixedBytes-rowOverhead))
	}
	return nil
}

// chunkEnd returns the end of the INSERT that starts at row start: at most
// insertChunk rows and, on MySQL, rows whose values fit packetBudget even
// if every byte were escaped in the text protocol (interpolateParams=true).
// A row too large for that goes alone (eventRows checked that its values
// fit the packet as they are).
func (s *base) chunkEnd(sizes []int, start int) int {
	end := min(start+insertChunk, len(sizes))
	if s.packetBudget <= 0 {
		return end
	}
	total := 0
	for i := start; i < end; i++ {
		total += 2*sizes[i] + rowOverhead
		if total > s.packetBudget && i > start {
			return i
		}
	}
	return end
}

// valueBytes is the size of the string and []byte values among args.
func valueBytes(args []any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		}
	}
	return n
}
