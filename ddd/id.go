package ddd

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet: it sorts in the same order as the
// values it encodes, so IDs compare correctly as strings.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var idGen struct {
	sync.Mutex
	lastMs uint64
	hi     uint16 // top 16 bits of the 80-bit random part
	lo     uint64 // low 64 bits of the 80-bit random part
}

// NewEventID returns a 26-character ULID-style identifier: 48 bits of Unix
// milliseconds followed by 80 random bits. IDs sort by creation time; within
// one millisecond in one process they are strictly increasing (the random
// part is incremented), so they also sort by creation order.
func NewEventID() string {
	ms := uint64(time.Now().UnixMilli())
	idGen.Lock()
	if ms <= idGen.lastMs {
		ms = idGen.lastMs
		idGen.lo++
		if idGen.lo == 0 {
			idGen.hi++
		}
	} else {
		var b [10]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		idGen.lastMs = ms
		idGen.hi = binary.BigEndian.Uint16(b[:2]) & 0x7fff // room to increment without overflow
		idGen.lo = binary.BigEndian.Uint64(b[2:])
	}
	hi, lo := idGen.hi, idGen.lo
	idGen.Unlock()

	// 128 bits: ms(48) | hi(16) | lo(64), encoded as 26 base32 digits (130 bits).
	var raw [16]byte
	binary.BigEndian.PutUint16(raw[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(raw[2:6], uint32(ms))
	binary.BigEndian.PutUint16(raw[6:8], hi)
	binary.BigEndian.PutUint64(raw[8:16], lo)
	return encodeBase32(raw)
}

func encodeBase32(raw [16]byte) string {
	var out [26]byte
	hi := binary.BigEndian.Uint64(raw[0:8])
	lo := binary.BigEndian.Uint64(raw[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
