package sqlstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/dddbus/eventbus/internal/store"
)

// sqliteUnsequenced is a condition selecting the events of table t that have
// no seq yet. One writer at a time: an id is taken inside the write lock
// and its transaction commits before the next writer takes one, and the
// sequencer numbers rows in id order under the same lock. So the
// unsequenced rows are exactly those above the id of the highest-sequenced
// row still stored, and the table needs no index of unsequenced rows:
// rowids find them. (seq IS NULL is checked too, so a row is never
// sequenced twice whatever happens.)
func sqliteUnsequenced(t string) string {
	return "id > COALESCE((SELECT id FROM " + t + " WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1), 0) AND seq IS NULL"
}

// sequencing builds the sequencer's statements. One UPDATE sequences the
// next rows from last_seq + 1 (the trigger of migration 0007 raises
// last_seq in the same statement), so the offset of a service starting at
// the latest position is last_seq plus the rows waiting, all sequenced
// after it.
func (s *sqliteStore) sequencing() {
	ev, unsequenced := s.q.events, sqliteUnsequenced(s.q.events)
	s.seqProbe = "SELECT 1 FROM " + ev + " WHERE " + unsequenced + " LIMIT 1"
	s.seqStep = "UPDATE " + ev + " SET seq = n.seq FROM (" +
		"SELECT id, (SELECT last_seq FROM " + s.q.sequencer + " WHERE id = 1) + ROW_NUMBER() OVER (ORDER BY id) AS seq" +
		" FROM (SELECT id FROM " + ev + " WHERE " + unsequenced + " ORDER BY id LIMIT " + strconv.Itoa(sequenceBatch) + ")) AS n" +
		" WHERE " + ev + ".id = n.id AND " + ev + ".seq IS NULL"
	s.seqRegister = s.q.r("INSERT INTO " + s.q.services +
		" (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at)" +
		" SELECT ?1, CASE WHEN ?2 < 0 THEN last_seq + (SELECT COUNT(*) FROM " + ev + " WHERE " + unsequenced + ") ELSE ?2 END," +
		" '', 0, 0, 0, {now}, {now} FROM " + s.q.sequencer + " WHERE id = 1 ON CONFLICT (name) DO NOTHING")
	s.seqOldest = "SELECT id FROM " + ev + " WHERE " + unsequenced + " ORDER BY id LIMIT 1"
}

// RegisterService inserts the service's row unless it exists.
func (s *sqliteStore) RegisterService(ctx context.Context, service string, start int64) error {
	if _, err := s.db.ExecContext(ctx, s.seqRegister, service, start); err != nil {
		return fmt.Errorf("register service %s: %w", service, err)
	}
	return nil
}

// Sequence probes, then sequences up to a batch with one UPDATE, whose row
// count is the events sequenced.
func (s *sqliteStore) Sequence(ctx context.Context) (int, bool, error) {
	if ok, err := s.waiting(ctx, s.seqProbe); !ok || err != nil {
		return 0, false, err
	}
	res, err := s.exec(ctx, nil, s.seqStep)
	if err != nil {
		return 0, false, fmt.Errorf("sequencer: %w", err)
	}
	got, err := res.RowsAffected()
	if err != nil {
		return 0, false, fmt.Errorf("sequencer: %w", err)
	}
	return int(got), got == sequenceBatch, nil
}

// TidyRuns does nothing: the sequencer keeps no runs on SQLite.
func (s *sqliteStore) TidyRuns(context.Context, store.TidyParams) (bool, error) { return false, nil }

func (s *sqliteStore) oldestUnsequenced() string { return s.seqOldest }

// HotQueries adds the sequencer's probe, which every poll runs.
func (s *sqliteStore) HotQueries() map[string]string {
	m := s.base.HotQueries()
	m["sequencerProbe"] = s.seqProbe
	return m
}
