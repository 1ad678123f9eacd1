package eventbus

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// record is one event as read from the log: the event plus its row id
// (insert order) and seq (delivery order).
type record struct {
	pk  int64
	seq int64
	evt *ddd.DomainEvent
}

// eventArgs are the values of eventCols for evt, in order.
func eventArgs(evt *ddd.DomainEvent, args []any) ([]any, error) {
	var meta any // NULL when there is none
	if len(evt.Metadata) > 0 {
		b, err := json.Marshal(evt.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata of %s: %v", ErrInvalidEvent, evt.ID, err)
		}
		meta = string(b)
	}
	return append(args, evt.ID, evt.Type, evt.Sender, int16(evt.SendType), []byte(evt.Payload), meta, evt.CreatedAt.UnixMicro()), nil
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
		if err := json.Unmarshal([]byte(meta.String), &evt.Metadata); err != nil {
			return nil, fmt.Errorf("event %s: metadata: %w", evt.ID, err)
		}
	}
	return &evt, nil
}
