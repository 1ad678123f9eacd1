package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/dddbus/eventbus/internal/store"
)

// Wake-ups across processes (see the bus's wakeup.go). PostgreSQL has
// LISTEN/NOTIFY: Announce issues a NOTIFY on the channel of the log, in
// the writer's transaction, and Listen (postgres_listen.go) waits for them
// on a connection of its own. Elsewhere ChangeMark is the probe: one read
// of the highest event id (the end of the primary key) and of last_seq
// (one row).

// Identity names the database and the table prefix; set by Init. A
// database that cannot be identified (in-memory SQLite, or one whose
// identity could not be read) is named by its pool.
func (s *Store) Identity() string { return s.wakeID }

func (s *Store) setIdentity(id string) {
	if file, ok := strings.CutPrefix(id, "SQLite file "); ok {
		s.probeFiles = []string{file, file + "-wal"}
	}
	if id == "" {
		id = fmt.Sprintf("pool %p", s.db)
	}
	s.wakeID = id + ", prefix " + s.prefix
	sum := sha256.Sum256([]byte(s.wakeID))
	s.channel = "eventbus_" + hex.EncodeToString(sum[:12])
}

// Channel is the PostgreSQL notification channel of the log: one per
// database, schema and prefix (a hash of Identity).
func (s *Store) Channel() string { return s.channel }

// Announces reports whether the database has notifications (PostgreSQL).
func (s *Store) Announces() bool { return s.d.name() == "postgres" }

// Announce sends a NOTIFY on the log's channel with from as payload, on on
// (nil: on its own, at once). PostgreSQL delivers it when on's transaction
// commits, and drops it if it rolls back; it folds identical notifications
// of one transaction into one. On its own, the NOTIFY's transaction
// commits without waiting for its WAL flush (synchronous_commit off for
// that transaction only): a notification needs no durability, and a
// committing NOTIFY holds a lock shared by the whole server.
func (s *Store) Announce(ctx context.Context, on store.Conn, from string) error {
	if !s.Announces() {
		return nil
	}
	var err error
	if on == nil {
		_, err = s.db.ExecContext(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)", s.channel, from)
	} else {
		_, err = on.ExecContext(ctx, "SELECT pg_notify($1, $2)", s.channel, from)
	}
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// ChangeMark reads the highest event id and last_seq in one statement. On
// SQLite it first compares the size and modification time of the database
// file and of its WAL with what they were at the last read (two stat
// calls, no SQL): every commit changes one of them, so the mark is read
// again only after something was written. The stamp is taken before the
// read, so a commit between the two is seen at the next call.
func (s *Store) ChangeMark(ctx context.Context) (store.ChangeMark, error) {
	var stamp []int64
	if len(s.probeFiles) > 0 {
		stamp = fileStamp(s.probeFiles)
		s.probe.mu.Lock()
		same := stamp != nil && s.probe.ok && slices.Equal(stamp, s.probe.stamp)
		m := s.probe.mark
		s.probe.mu.Unlock()
		if same {
			return m, nil
		}
	}
	var m store.ChangeMark
	if err := s.db.QueryRowContext(ctx, s.q.changeMark).Scan(&m.MaxID, &m.LastSeq); err != nil {
		return m, fmt.Errorf("change probe: %w", err)
	}
	if stamp != nil {
		s.probe.mu.Lock()
		s.probe.stamp, s.probe.mark, s.probe.ok = stamp, m, true
		s.probe.mu.Unlock()
	}
	return m, nil
}

// probeCache is SQLite's last change mark and the files' stamp it was read at.
type probeCache struct {
	mu    sync.Mutex
	ok    bool
	stamp []int64
	mark  store.ChangeMark
}

// fileStamp is the size and modification time of each file (a missing WAL
// counts as size -1); nil if one cannot be read otherwise.
func fileStamp(files []string) []int64 {
	st := make([]int64, 0, 2*len(files))
	for _, f := range files {
		fi, err := os.Stat(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			st = append(st, -1, 0)
		case err != nil:
			return nil
		default:
			st = append(st, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return st
}
