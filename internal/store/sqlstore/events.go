package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// insertChunk bounds the rows of one INSERT (7 parameters each) well under
// every driver's placeholder limit. On MySQL the server's packet limit
// may cut statements shorter (see chunkEnd).
const insertChunk = 500

// InsertEvents writes events on on (nil: in a transaction of the store's
// own), in as few statements as the placeholder and packet limits allow.
func (s *base) InsertEvents(ctx context.Context, on store.Conn, events []store.EncodedEvent) error {
	if on == nil {
		return s.inTx(ctx, func(tx *sql.Tx) error { return s.insertEvents(ctx, tx, events) })
	}
	return s.insertEvents(ctx, on, events)
}

func (s *base) insertEvents(ctx context.Context, on txConn, events []store.EncodedEvent) error {
	sizes := make([]int, len(events))
	args := make([]any, 0, len(events)*7)
	for i, e := range events {
		sizes[i] = e.Bytes
		args = append(args, e.Values...)
	}
	for start, end := 0, 0; start < len(sizes); start = end {
		end = s.chunkEnd(sizes, start)
		if _, err := s.exec(ctx, on, s.q.insertEvents(end-start), args[start*7:end*7]...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

// FetchEvents reads up to limit sequenced events after offset after.
func (s *base) FetchEvents(ctx context.Context, after int64, limit int) ([]store.Record, error) {
	recs := make([]store.Record, 0, min(limit, 1024))
	err := s.query(ctx, nil, s.q.fetchEvents, []any{after, limit}, func(rows *sql.Rows) error {
		var r store.Record
		var err error
		r.Event, err = scanEvent(rows, &r.PK, &r.Seq)
		recs = append(recs, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch events: %w", err)
	}
	return recs, nil
}
