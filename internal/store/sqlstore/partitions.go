package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// partitionQueries are the statements of partitions and members (see
// migration 0009); the insert of a member is each database's (engine.addMember).
type partitionQueries struct {
	memberSeen, memberLeave, membersLive, membersPrune, membersDrop string
	baseRow, partRows, requestSwitch, raiseSwitch                   string
	lockBase, lockOldParts, maxEpoch, unslotted, slotRetries        string
	dropParts, addPart, setBase                                     string
	seekFenceParts, seekReadParts, seekMoveParts                    string
}

func newPartitionQueries(q *queries, prefix string) partitionQueries {
	r := q.r
	members := prefix + "members"
	return partitionQueries{
		memberSeen:   r("UPDATE " + members + " SET seen_until = {now} + ? WHERE service = ? AND instance = ?"),
		memberLeave:  r("DELETE FROM " + members + " WHERE service = ? AND instance = ?"),
		membersLive:  r("SELECT instance FROM " + members + " WHERE service = ? AND seen_until >= {now} ORDER BY instance"),
		membersDrop:  r("DELETE FROM " + members + " WHERE service = ?"),
		membersPrune: r("DELETE FROM " + members + " WHERE service = ? AND seen_until < {now} - 60000"),
		baseRow: r("SELECT partitions, switch_to, switch_seq, consumed_seq, owner, lease_until, {now} FROM " + q.services +
			" WHERE name = ?"),
		partRows: r("SELECT name, part, consumed_seq, owner, lease_until FROM " + q.services +
			" WHERE parent = ? AND partitions = 0 ORDER BY part"),
		requestSwitch: r("UPDATE " + q.services + " SET switch_to = ?, switch_seq = (SELECT last_seq FROM " + q.sequencer +
			" WHERE id = 1), updated_at = {now} WHERE name = ? AND switch_to = 0 AND partitions <> ? AND partitions > 0"),
		raiseSwitch: r("UPDATE " + q.services + " SET switch_seq = ?, updated_at = {now} WHERE name = ? AND switch_to = ? AND switch_seq < ?"),
		// The switch locks the base row, then every row of the old count,
		// which must all be at the switch's offset with no live lease.
		lockBase: r("UPDATE " + q.services + " SET version = version + 1 WHERE name = ? AND partitions = ?"),
		lockOldParts: r("UPDATE " + q.services + " SET version = version + 1 WHERE " +
			"((? = 1 AND name = ?) OR (? > 1 AND parent = ? AND partitions = 0))" +
			" AND consumed_seq = ? AND (owner = '' OR lease_until < {now})"),
		maxEpoch:    r("SELECT COALESCE(MAX(epoch), 0) FROM " + q.services + " WHERE name = ? OR (parent = ? AND partitions = 0)"),
		unslotted:   r("SELECT DISTINCT sender FROM " + q.retries + " WHERE service = ? AND slot < 0"),
		slotRetries: r("UPDATE " + q.retries + " SET slot = ? WHERE service = ? AND sender = ? AND slot < 0"),
		// A seek of a partitioned service moves every partition.
		seekFenceParts: r("UPDATE " + q.services + " SET owner = '', epoch = epoch + 1, version = version + 1," +
			" lease_until = 0, updated_at = {now} WHERE parent = ? AND partitions = 0"),
		seekReadParts: r("SELECT MIN(consumed_seq) FROM " + q.services + " WHERE parent = ? AND partitions = 0"),
		seekMoveParts: r("UPDATE " + q.services + " SET consumed_seq = ? WHERE parent = ? AND partitions = 0"),
		dropParts:     r("DELETE FROM " + q.services + " WHERE parent = ? AND partitions = 0"),
		addPart: r("INSERT INTO " + q.services + " (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at," +
			" partitions, parent, part) VALUES (?, ?, '', ?, 0, 0, {now}, {now}, 0, ?, ?)"),
		setBase: r("UPDATE " + q.services + " SET partitions = ?, switch_to = 0, switch_seq = 0, consumed_seq = ?, epoch = ?," +
			" owner = '', lease_until = 0, version = version + 1, updated_at = {now} WHERE name = ?"),
	}
}

// ReportMember records a running instance of a service (with p.Standby,
// also its standby presence on the service's row, so RemoveService refuses
// while it runs), and reads what sharing the partitions needs, in one
// transaction.
func (s *base) ReportMember(ctx context.Context, p store.MemberParams) (store.PartitionView, error) {
	var v store.PartitionView
	pq := &s.pq
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v = store.PartitionView{}
		var owner string
		var offset, until int64
		err := tx.QueryRowContext(ctx, pq.baseRow, p.Service).Scan(&v.Partitions, &v.SwitchTo, &v.SwitchSeq, &offset, &owner, &until, &v.Now)
		if err == sql.ErrNoRows {
			return nil
		} else if err != nil {
			return err
		}
		v.Exists = true
		if p.Standby {
			if _, err := tx.ExecContext(ctx, s.q.renewStandby, p.LeaseMillis, p.Service); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, pq.memberSeen, p.LeaseMillis, p.Service, p.Instance)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 { // new (or, on MySQL, seen twice in one millisecond)
			if _, err := tx.ExecContext(ctx, s.eng.addMember(), p.Service, p.Instance, p.LeaseMillis); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, pq.membersPrune, p.Service); err != nil {
			return err
		}
		if v.Members, err = queryAll[string](ctx, s, tx, pq.membersLive, p.Service); err != nil {
			return err
		}
		if v.Partitions <= 1 {
			v.Rows = []store.PartitionState{{Name: p.Service, Offset: offset, Owner: owner, LeaseUntil: until}}
			return nil
		}
		rows, err := tx.QueryContext(ctx, pq.partRows, p.Service)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.PartitionState
			if err := rows.Scan(&r.Name, &r.Part, &r.Offset, &r.Owner, &r.LeaseUntil); err != nil {
				return err
			}
			v.Rows = append(v.Rows, r)
		}
		return rows.Err()
	})
	if err != nil {
		return v, fmt.Errorf("report member: %w", err)
	}
	return v, nil
}

// LeaveMember removes an instance from its service's members at once (a
// graceful stop).
func (s *base) LeaveMember(ctx context.Context, service, instance string) error {
	if _, err := s.exec(ctx, nil, s.pq.memberLeave, service, instance); err != nil {
		return fmt.Errorf("leave members: %w", err)
	}
	return nil
}

// RequestSwitch asks for service's partition count to become to, once
// every partition of the current count has consumed what is sequenced now;
// false if a change is pending already or the count is to.
func (s *base) RequestSwitch(ctx context.Context, service string, to int) (bool, error) {
	res, err := s.exec(ctx, nil, s.pq.requestSwitch, to, service, to)
	if err != nil {
		return false, fmt.Errorf("request partition switch: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RaiseSwitch moves a pending change's switch point up to seq.
func (s *base) RaiseSwitch(ctx context.Context, service string, to int, seq int64) error {
	if _, err := s.exec(ctx, nil, s.pq.raiseSwitch, seq, service, to, seq); err != nil {
		return fmt.Errorf("raise partition switch: %w", err)
	}
	return nil
}

// SwitchPartitions replaces the rows of p.From partitions, all at p.At and
// none leased, by p.To rows at p.At, in one transaction; false (nothing
// done) otherwise. Retry rows stored before migration 0009 get their slot.
func (s *base) SwitchPartitions(ctx context.Context, p store.SwitchParams) (bool, error) {
	pq := &s.pq
	done := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		done = false
		res, err := tx.ExecContext(ctx, pq.lockBase, p.Service, p.From)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		res, err = tx.ExecContext(ctx, pq.lockOldParts, p.From, p.Service, p.From, p.Service, p.At)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(p.From) {
			return errNotAligned // roll back the locks' version bumps
		}
		var epoch int64
		if err := tx.QueryRowContext(ctx, pq.maxEpoch, p.Service, p.Service).Scan(&epoch); err != nil {
			return err
		}
		epoch++ // above every epoch an old owner may still hold
		senders, err := queryAll[string](ctx, s, tx, pq.unslotted, p.Service)
		if err != nil {
			return err
		}
		for _, x := range senders {
			if _, err := tx.ExecContext(ctx, pq.slotRetries, store.Slot(x), p.Service, x); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, pq.dropParts, p.Service); err != nil {
			return err
		}
		if p.To > 1 {
			for i := 0; i < p.To; i++ {
				if _, err := tx.ExecContext(ctx, pq.addPart, store.PartitionRow(p.Service, i, p.To), p.At, epoch, p.Service, i); err != nil {
					return err
				}
			}
		}
		if _, err := tx.ExecContext(ctx, pq.setBase, p.To, p.At, epoch, p.Service); err != nil {
			return err
		}
		done = true
		return nil
	})
	if err == errNotAligned {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("switch partitions: %w", err)
	}
	return done, nil
}

// errNotAligned rolls back a switch whose old rows are not all at its
// offset and free.
var errNotAligned = fmt.Errorf("partitions not aligned")
