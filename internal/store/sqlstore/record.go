package sqlstore

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// EncodeEvent returns evt's values of eventCols, in order, and their
// bytes; an event whose row cannot fit the server's packet is refused.
func (s *base) EncodeEvent(evt *ddd.DomainEvent) (store.EncodedEvent, error) {
	var meta any // NULL when there is none
	if len(evt.Metadata) > 0 {
		m, err := encodeMetadata(evt.Metadata)
		if err != nil {
			return store.EncodedEvent{}, fmt.Errorf("%w: metadata of %s: %v", ddd.ErrInvalidEvent, evt.ID, err)
		}
		meta = m
	}
	vals := []any{evt.ID, evt.Type, evt.Sender, int16(evt.SendType), []byte(evt.Payload), meta, evt.CreatedAt.UnixMicro()}
	size := valueBytes(vals)
	if s.packetBudget > 0 && size+rowOverhead > s.packetBudget {
		return store.EncodedEvent{}, fmt.Errorf("%w: %s is %d bytes with its metadata, more than the server's max_allowed_packet of %d bytes allows",
			ddd.ErrInvalidEvent, evt.ID, size, s.packetBytes)
	}
	return store.EncodedEvent{Values: vals, Bytes: size}, nil
}

// scanEvent reads eventCols into a new event; prefix holds destinations for
// the columns selected before them.
func scanEvent(rows *sql.Rows, prefix ...any) (*ddd.DomainEvent, error) {
	var (
		evt      ddd.DomainEvent
		sendType int16
		payload  []byte
		meta     sql.NullString
		occurred int64
	)
	dest := append(prefix, &evt.ID, &evt.Type, &evt.Sender, &sendType, &payload, &meta, &occurred)
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	evt.SendType = ddd.SendType(sendType)
	evt.Payload = payload
	evt.CreatedAt = time.UnixMicro(occurred).UTC()
	if meta.Valid && meta.String != "" {
		m, err := decodeMetadata(meta.String)
		if err != nil {
			return nil, fmt.Errorf("event %s: metadata: %w", evt.ID, err)
		}
		evt.Metadata = m
	}
	return &evt, nil
}
