package sqlstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/dddbus/eventbus/internal/store"
)

// sequencing builds the sequencer's statements: the procedures of migration
// 0007, each returning one row, and a probe. MariaDB runs a procedure call
// slowly (~0.2 ms), so a plain read first says whether the open run holds
// a committed row or there are holes (which the procedure then probes one
// by one). It is a hint: a consistent read at any level (a dirty one at
// READ UNCOMMITTED only calls the procedure for nothing), and takes no
// lock. The integers go in the statement text: go-sql-driver/mysql would
// otherwise prepare, run and close every statement that has arguments
// (three round trips).
func (s *mysqlStore) sequencing() {
	batch := strconv.Itoa(sequenceBatch)
	runs := s.prefix + "sequencer_runs"
	latest := "(SELECT MAX(version) FROM " + runs + ")"
	s.seqProbe = "SELECT 1 FROM DUAL WHERE EXISTS (SELECT 1 FROM " + s.q.events + " FORCE INDEX (" + s.prefix + "events_seq)" +
		" WHERE seq IS NULL AND id >= (SELECT MAX(lo) FROM " + runs + " WHERE version = " + latest + "))" +
		" OR (SELECT COUNT(*) FROM " + runs + " WHERE version = " + latest + ") > 1"
	s.seqStep = "CALL " + s.prefix + "sequence(" + batch + ")"
	s.seqRegister = s.q.r("CALL " + s.prefix + "register_service(?, ?, {now}, " + batch + ")")
}

// RegisterService runs register_service.
func (s *mysqlStore) RegisterService(ctx context.Context, service string, start int64) error {
	return s.registerByCall(ctx, s.seqRegister, service, start)
}

// Sequence probes, then runs one step of the sequence procedure if there may
// be work.
func (s *mysqlStore) Sequence(ctx context.Context) (int, bool, error) {
	if ok, err := s.waiting(ctx, s.seqProbe); !ok || err != nil {
		return 0, false, err
	}
	return s.stepByCall(ctx, s.seqStep)
}

// TidyRuns runs sequence_tidy.
func (s *mysqlStore) TidyRuns(ctx context.Context, p store.TidyParams) (bool, error) {
	return s.tidyByCall(ctx, p, func(sweep int64) string {
		return fmt.Sprintf("CALL %ssequence_tidy(%d, %d, %d, %d)", s.prefix, p.Settle, p.Expire, sweep, sequenceBatch)
	})
}

// HotQueries adds the sequencer's probe, which every poll runs.
func (s *mysqlStore) HotQueries() map[string]string {
	m := s.base.HotQueries()
	m["sequencerProbe"] = s.seqProbe
	return m
}
