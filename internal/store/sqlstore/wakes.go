package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// Wake-ups across processes (see the bus's wakeup.go). PostgreSQL has
// LISTEN/NOTIFY (postgres_notify.go). Elsewhere ChangeMark is the probe:
// one read of the highest event id (the end of the primary key) and of
// last_seq (one row); SQLite spares even that read while its files are
// unchanged (sqlite_probe.go).

// Identity names the database and the table prefix; set by Init. A
// database that cannot be identified (in-memory SQLite, or one whose
// identity could not be read) is named by its pool.
func (s *base) Identity() string { return s.wakeID }

// initIdentity reads the database's identity with the store's own pool
// (so that recognising a caller's transaction from another pool never
// needs a connection of it) and names the log's wake-ups after it. An
// identity that cannot be read is "" (named by the pool).
func (s *base) initIdentity(ctx context.Context) {
	id, err := s.eng.identify(ctx, s.db)
	if err == nil {
		s.ident.id = id
	}
	s.setIdentity(id)
}

func (s *base) setIdentity(id string) {
	if id == "" {
		id = fmt.Sprintf("pool %p", s.db)
	}
	s.wakeID = id + ", prefix " + s.prefix
}

// ChangeMark reads the highest event id and last_seq in one statement.
func (s *base) ChangeMark(ctx context.Context) (store.ChangeMark, error) {
	var m store.ChangeMark
	if err := s.db.QueryRowContext(ctx, s.q.changeMark).Scan(&m.MaxID, &m.LastSeq); err != nil {
		return m, fmt.Errorf("change probe: %w", err)
	}
	return m, nil
}

// polled is embedded by the stores of databases without notifications
// (MySQL, SQLite): buses there learn of other processes' events through
// ChangeMark alone.
type polled struct{ dialect string }

// Announces reports false: no LISTEN/NOTIFY.
func (polled) Announces() bool { return false }

// Announce does nothing.
func (polled) Announce(context.Context, store.Conn, string) error { return nil }

// Listen is unsupported.
func (p polled) Listen(context.Context, store.ListenParams) error {
	return fmt.Errorf("%w: %s has no LISTEN/NOTIFY", errors.ErrUnsupported, p.dialect)
}

// Channel is "": there is no notification channel.
func (polled) Channel() string { return "" }
