package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// The sequencer's server-side step; see the bus's sequencer.go for why it
// exists and migration 0007 for the procedures. Each database's store
// writes its own RegisterService, Sequence and TidyRuns (postgres.go,
// mysql_sequencer.go, sqlite_sequencer.go) from the helpers here.

const (
	sequenceBatch = 5000
	sequenceSpan  = 4 * sequenceBatch // PostgreSQL's window per run, in ids

	noSweepSecs = int64(1) << 40 // a sweep interval that never comes (tidy without sweeping)
)

// registerByCall runs register_service (PostgreSQL, MySQL), which returns
// one row.
func (s *base) registerByCall(ctx context.Context, call, service string, start int64) error {
	if err := s.db.QueryRowContext(ctx, call, service, start).Scan(new(bool)); err != nil {
		return fmt.Errorf("register service %s: %w", service, err)
	}
	return nil
}

// stepByCall runs the sequence procedure (PostgreSQL, MySQL), which
// returns (sequenced, more). A procedure call in autocommit, never in a
// transaction of the store's (s.exec would wrap it on PostgreSQL): the
// procedure commits itself, at the level it states.
func (s *base) stepByCall(ctx context.Context, call string) (n int, more bool, err error) {
	if err := s.db.QueryRowContext(ctx, call).Scan(&n, &more); err != nil {
		return 0, false, fmt.Errorf("sequencer: %w", err)
	}
	return n, more, nil
}

// tidyByCall runs sequence_tidy (PostgreSQL, MySQL), built by call with
// the sweep interval in seconds.
func (s *base) tidyByCall(ctx context.Context, p store.TidyParams, call func(sweep int64) string) (bool, error) {
	sweep := p.Sweep
	if sweep < 0 {
		sweep = noSweepSecs
	}
	var changed bool
	if err := s.db.QueryRowContext(ctx, call(sweep)).Scan(&changed); err != nil {
		return false, fmt.Errorf("sequencer: tidy: %w", err)
	}
	return changed, nil
}

// waiting runs a sequencer probe (MySQL, SQLite): a read that returns a
// row if the step may have work.
func (s *base) waiting(ctx context.Context, probe string) (bool, error) {
	var one int
	switch err := s.queryRow(ctx, nil, probe, nil, &one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sequencer: probe: %w", err)
	}
	return true, nil
}
