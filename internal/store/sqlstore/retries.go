package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// retryCols is the values per row of insertRetries.
const retryCols = 11

// insertRetries stores new retry rows of service on tx.
func (s *base) insertRetries(ctx context.Context, tx *sql.Tx, service string, rows []store.NewRetry) error {
	args := make([]any, 0, len(rows)*retryCols)
	for _, r := range rows {
		fifo, state := 0, stateRetry
		if r.Event.SendType == ddd.SendFIFO {
			fifo = 1
		}
		if r.Dead {
			state = stateDead
		}
		args = append(args, service, r.PK, r.Seq, r.Event.ID, r.Event.Sender, fifo, state, r.Attempts, r.DelayMilli, r.LastError, store.Slot(r.Event.Sender))
	}
	for start := 0; start < len(rows); start += insertChunk {
		end := min(start+insertChunk, len(rows))
		if _, err := tx.ExecContext(ctx, s.eng.insertRetries(end-start), args[start*retryCols:end*retryCols]...); err != nil {
			return fmt.Errorf("store retries: %w", err)
		}
	}
	return nil
}

// BlockedSenders returns those of senders that have a FIFO event waiting
// in the retry store.
func (s *base) BlockedSenders(ctx context.Context, service string, senders []string) ([]string, error) {
	args := make([]any, 0, len(senders)+1)
	args = append(args, service)
	for _, x := range senders {
		args = append(args, x)
	}
	return queryAll[string](ctx, s, nil, s.q.blockedSenders(len(senders)), args...)
}

// DueRetries reads a page of due retries.
func (s *base) DueRetries(ctx context.Context, p store.DueRetriesParams) ([]store.Retry, error) {
	query, args := s.q.fetchRetries, []any{p.Service, p.Limit}
	if len(p.Exclude) > 0 || p.Partitions > 1 {
		query = s.q.fetchRetriesExcept(len(p.Exclude), p.Partitions > 1)
		args = make([]any, 0, len(p.Exclude)+4)
		args = append(args, p.Service)
		if p.Partitions > 1 {
			args = append(args, p.Partitions, p.Partition)
		}
		for _, x := range p.Exclude {
			args = append(args, x)
		}
		args = append(args, p.Limit)
	}
	var out []store.Retry
	err := s.query(ctx, nil, query, args, func(rows *sql.Rows) error {
		var r store.Retry
		var err error
		r.Event, err = scanEvent(rows, &r.PK, &r.Attempts, &r.Seq)
		out = append(out, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch retries: %w", err)
	}
	return out, nil
}

// RecordRetries applies a retry phase's outcomes in one transaction that
// first passes the fence.
func (s *base) RecordRetries(ctx context.Context, p store.RecordRetriesParams) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.renewLease(ctx, tx, p.LeaseParams); err != nil {
			return err
		}
		for _, f := range p.Failed {
			state := stateRetry
			if f.Dead {
				state = stateDead
			}
			if _, err := tx.ExecContext(ctx, s.q.updateRetry, state, f.Attempts, f.DelayMilli, f.LastError, p.Service, f.PK); err != nil {
				return fmt.Errorf("update retry: %w", err)
			}
		}
		if len(p.Done) > 0 {
			args := make([]any, 0, len(p.Done)+1)
			args = append(args, p.Service)
			for _, pk := range p.Done {
				args = append(args, pk)
			}
			if _, err := tx.ExecContext(ctx, s.q.deleteRetriesByPK(len(p.Done)), args...); err != nil {
				return fmt.Errorf("delete retries: %w", err)
			}
		}
		return nil
	})
}
