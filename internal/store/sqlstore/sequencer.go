package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// The sequencer's server-side step; see the bus's sequencer.go for why it
// exists and migration 0007 for the procedures.

const (
	numberBatch = 5000
	numberSpan  = 4 * numberBatch // PostgreSQL's window per run, in ids

	noSweepSecs = int64(1) << 40 // a sweep interval that never comes (tidy without sweeping)
)

// RegisterService creates the service's row at start unless it exists:
// one server-side step (register_service in migration 0007; one INSERT on
// SQLite).
func (s *Store) RegisterService(ctx context.Context, service string, start int64) error {
	var err error
	if s.q.seqIsUpdate { // SQLite: one INSERT
		_, err = s.db.ExecContext(ctx, s.q.seqRegister, service, start)
	} else {
		err = s.db.QueryRowContext(ctx, s.q.seqRegister, service, start).Scan(new(bool))
	}
	if err != nil {
		return fmt.Errorf("register service %s: %w", service, err)
	}
	return nil
}

// Number runs one sequencer step.
func (s *Store) Number(ctx context.Context) (n int, more bool, err error) {
	if s.q.seqProbe != "" {
		var one int
		switch err := s.queryRow(ctx, nil, s.q.seqProbe, nil, &one); {
		case errors.Is(err, sql.ErrNoRows):
			return 0, false, nil // nothing waits
		case err != nil:
			return 0, false, fmt.Errorf("sequencer: probe: %w", err)
		}
	}
	if s.q.seqIsUpdate {
		res, err := s.exec(ctx, nil, s.q.seqStep)
		if err != nil {
			return 0, false, fmt.Errorf("sequencer: %w", err)
		}
		got, err := res.RowsAffected()
		if err != nil {
			return 0, false, fmt.Errorf("sequencer: %w", err)
		}
		return int(got), got == numberBatch, nil
	}
	// A procedure call in autocommit, never in a transaction of the store's
	// (s.exec would wrap it on PostgreSQL): the procedure commits itself,
	// at the level it states.
	if err := s.db.QueryRowContext(ctx, s.q.seqStep).Scan(&n, &more); err != nil {
		return 0, false, fmt.Errorf("sequencer: %w", err)
	}
	return n, more, nil
}

// TidyRuns runs sequence_tidy where the sequencer keeps runs (PostgreSQL,
// MySQL); SQLite has none.
func (s *Store) TidyRuns(ctx context.Context, p store.TidyParams) (bool, error) {
	if s.q.seqTidy == nil {
		return false, nil
	}
	sweep := p.Sweep
	if sweep < 0 {
		sweep = noSweepSecs
	}
	var changed bool
	if err := s.db.QueryRowContext(ctx, s.q.seqTidy(p.Settle, p.Expire, sweep)).Scan(&changed); err != nil {
		return false, fmt.Errorf("sequencer: tidy: %w", err)
	}
	return changed, nil
}
