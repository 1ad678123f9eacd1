package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// AcquireLease takes the lease in one transaction: the conditional UPDATE
// (which raises the epoch), then the row it wrote.
func (s *base) AcquireLease(ctx context.Context, p store.LeaseParams) (store.Lease, bool, error) {
	var l store.Lease
	ok := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q.acquireLease, p.Owner, p.LeaseMillis, p.LeaseRow(), p.Owner)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // held by a live instance (or the service was removed)
		}
		var owner string
		if err := tx.QueryRowContext(ctx, s.q.readLease, p.LeaseRow()).Scan(&owner, &l.Epoch, &l.Offset); err != nil {
			return err
		}
		if owner != p.Owner {
			return fmt.Errorf("lease row names %q after acquiring it as %q", owner, p.Owner)
		}
		ok = true
		return nil
	})
	if err != nil {
		return l, false, fmt.Errorf("acquire lease: %w", err)
	}
	return l, ok, nil
}

// RenewLease extends the lease; it is also the fence of the retry phase
// (see RecordRetries): one statement for both.
func (s *base) RenewLease(ctx context.Context, p store.LeaseParams) error {
	if err := s.renewLease(ctx, nil, p); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// renewLease checks and extends the lease on on (nil: on its own);
// ErrLeaseLost if it changed hands. version changes on every fenced
// write, so the affected-row count is exact on MySQL too.
func (s *base) renewLease(ctx context.Context, on txConn, p store.LeaseParams) error {
	res, err := s.exec(ctx, on, s.q.renewLease, p.LeaseMillis, p.LeaseRow(), p.Owner, p.Epoch)
	if err != nil {
		return err
	}
	return lostIfNone(res)
}

// lostIfNone is ErrLeaseLost when a fenced write changed no row.
func lostIfNone(res sql.Result) error {
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// ReleaseLease clears the owner, by owner alone.
func (s *base) ReleaseLease(ctx context.Context, service, owner string) error {
	_, err := s.exec(ctx, nil, s.q.releaseLease, service, owner)
	return err
}

// CommitOffset moves the offset (never back) under the fence; with retry
// rows, in one transaction with their INSERT, else as one statement.
func (s *base) CommitOffset(ctx context.Context, p store.CommitOffsetParams) error {
	if len(p.Retries) == 0 {
		return s.commitOffset(ctx, nil, p)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.commitOffset(ctx, tx, p); err != nil {
			return err
		}
		return s.insertRetries(ctx, tx, p.Service, p.Retries)
	})
}

func (s *base) commitOffset(ctx context.Context, on txConn, p store.CommitOffsetParams) error {
	res, err := s.exec(ctx, on, s.q.commitOffset, p.Offset, p.LeaseMillis, p.LeaseRow(), p.Owner, p.Epoch, p.Offset)
	if err != nil {
		return fmt.Errorf("commit offset: %w", err)
	}
	return lostIfNone(res)
}

// ReportStandby raises the service's standby presence.
func (s *base) ReportStandby(ctx context.Context, service string, leaseMillis int64) (bool, error) {
	res, err := s.exec(ctx, nil, s.q.renewStandby, leaseMillis, service)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n > 0 {
		return true, nil
	}
	// MySQL counts changed rows only: the same value written twice in one
	// millisecond changes nothing. Look at the row itself.
	var rows int
	if err := s.queryRow(ctx, nil, s.q.serviceExists, []any{service}, &rows); err != nil {
		return false, err
	}
	return rows > 0, nil
}
