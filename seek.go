package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SeekPosition says where SeekService moves a service's offset.
type SeekPosition struct {
	kind int8 // 0 latest, 1 earliest, 2 after seq, 3 time
	seq  int64
	at   time.Time
}

var (
	// SeekLatest skips everything sequenced so far: the service next
	// receives what is sequenced after the seek.
	SeekLatest = SeekPosition{}
	// SeekEarliest delivers again every event still retained in the log.
	SeekEarliest = SeekPosition{kind: 1}
)

// SeekAfter moves the offset to log position seq: the service next
// receives the events with a higher seq (SeekAfter(n-1) delivers event n
// again). seq must be between 0 and the last sequence number given out.
func SeekAfter(seq int64) SeekPosition { return SeekPosition{kind: 2, seq: seq} }

// SeekToTime moves the offset just before the first event, in log order,
// that was stored at or after t (database clock): that event and every
// one after it in the log are delivered again (including events stored
// before t whose transactions committed after it). With no such event it
// is SeekLatest. Finding it reads the whole log once (there is no index on
// the storing time).
func SeekToTime(t time.Time) SeekPosition { return SeekPosition{kind: 3, at: t} }

func (p SeekPosition) String() string {
	switch p.kind {
	case 1:
		return "earliest"
	case 2:
		return fmt.Sprintf("after seq %d", p.seq)
	case 3:
		return "time " + p.at.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// SeekResult says what SeekService did.
type SeekResult struct {
	Service string
	From    int64 // the offset before the seek
	To      int64 // the offset after it
	// RetriesDropped counts the service's retries (and parked FIFO events)
	// whose events lie after the new offset: they were removed from the
	// retry store, because the log delivers those events again.
	RetriesDropped int64
}

// SeekService moves the offset of service name (any service, not only this
// bus's) to pos, so that it consumes again from there (backwards) or skips
// what lies before it (forwards). It may run while the service runs:
//
//   - Leases: the seek takes the lease away from the owner, if any, by
//     raising the service's epoch, in the same transaction as the new
//     offset. The owner's writes are fenced from then on: the batch it has
//     in flight (and at most one more, read before it noticed) is handled
//     but never committed, and it takes the lease again, with the new
//     offset, at its next poll (or a standby does).
//   - Retries: waiting retries and parked FIFO events whose events lie
//     after the new offset are removed (the log delivers those events
//     again, so they would run twice); those at or before it stay and are
//     retried as scheduled.
//   - Dead letters are never touched. One whose event is delivered again
//     stays a dead letter (listed, replayable) whatever that delivery does.
//
// It returns an error wrapping ErrServiceNotFound for an unknown service,
// and ErrInvalidArgument for a seq outside 0..the last sequence number.
func (b *EventBus) SeekService(ctx context.Context, name string, pos SeekPosition) (SeekResult, error) {
	res := SeekResult{Service: name}
	if err := validateServiceName(name); err != nil {
		return res, err
	}
	if pos.kind == 2 && pos.seq < 0 {
		return res, fmt.Errorf("%w: seek position must be >= 0, got %d", ErrInvalidArgument, pos.seq)
	}
	byTime := int64(-1) // the offset pos names by time, if it does
	if pos.kind == 3 {
		var first sql.NullInt64
		err := b.queryRow(ctx, nil, b.d.rebind("SELECT MIN(seq) FROM "+b.q.events+" WHERE created_at >= ? AND seq IS NOT NULL"),
			[]any{pos.at.UnixMilli()}, &first)
		if err != nil {
			return res, fmt.Errorf("seek %s: find %s: %w", name, pos, err)
		}
		if first.Valid {
			byTime = first.Int64 - 1
		}
	}
	r := b.d.rebind
	err := b.inTx(ctx, func(tx *sql.Tx) error {
		// Fence the owner first: this write also locks the service's row.
		fenced, err := b.exec(ctx, tx, r("UPDATE "+b.q.services+" SET owner = '', epoch = epoch + 1, version = version + 1,"+
			" lease_until = 0, updated_at = "+b.q.now+" WHERE name = ?"), name)
		if err != nil {
			return err
		}
		if n, err := fenced.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: %s", ErrServiceNotFound, name)
		}
		var head int64
		if err := b.queryRow(ctx, tx, r("SELECT s.consumed_seq, q.last_seq FROM "+b.q.services+" s CROSS JOIN "+b.q.sequencer+
			" q WHERE q.id = 1 AND s.name = ?"), []any{name}, &res.From, &head); err != nil {
			return err
		}
		switch pos.kind {
		case 0:
			res.To = head
		case 1:
			res.To = 0
		case 2:
			if pos.seq > head {
				return fmt.Errorf("%w: seek position %d is past the last sequence number %d", ErrInvalidArgument, pos.seq, head)
			}
			res.To = pos.seq
		case 3:
			res.To = head
			if byTime >= 0 && byTime < head {
				res.To = byTime
			}
		}
		if _, err := b.exec(ctx, tx, r("UPDATE "+b.q.services+" SET consumed_seq = ? WHERE name = ?"), res.To, name); err != nil {
			return err
		}
		dropped, err := b.exec(ctx, tx, r("DELETE FROM "+b.q.retries+" WHERE service = ? AND state = 0 AND seq > ?"), name, res.To)
		if err != nil {
			return err
		}
		res.RetriesDropped, err = dropped.RowsAffected()
		return err
	})
	if err != nil {
		if errors.Is(err, ErrServiceNotFound) || errors.Is(err, ErrInvalidArgument) {
			return res, err
		}
		return res, fmt.Errorf("seek %s to %s: %w", name, pos, err)
	}
	b.log.Info("eventbus: service seeked", "target", name, "to", pos.String(), "from_offset", res.From, "to_offset", res.To, "retries_dropped", res.RetriesDropped)
	b.Notify()
	return res, nil
}
