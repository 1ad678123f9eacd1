package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/internal/store"
	"github.com/jackc/pgx/v5"
)

// Wake-ups across processes on PostgreSQL: Announce issues a NOTIFY on the
// channel of the log, in the writer's transaction, and Listen waits for
// them on a connection of its own.

// Channel is the PostgreSQL notification channel of the log: one per
// database, schema and prefix (a hash of Identity); set by Init.
func (s *postgresStore) Channel() string { return s.channel }

func (s *postgresStore) setChannel() {
	sum := sha256.Sum256([]byte(s.wakeID))
	s.channel = "eventbus_" + hex.EncodeToString(sum[:12])
}

// Announces reports true: PostgreSQL has notifications.
func (s *postgresStore) Announces() bool { return true }

// Announce sends a NOTIFY on the log's channel with from as payload, on on
// (nil: on its own, at once). PostgreSQL delivers it when on's transaction
// commits, and drops it if it rolls back; it folds identical notifications
// of one transaction into one. On its own, the NOTIFY's transaction
// commits without waiting for its WAL flush (synchronous_commit off for
// that transaction only): a notification needs no durability, and a
// committing NOTIFY holds a lock shared by the whole server.
func (s *postgresStore) Announce(ctx context.Context, on store.Conn, from string) error {
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

// closeTimeout bounds closing the listener's connection.
const closeTimeout = 5 * time.Second

// Listen opens a connection of its own from p.DSN (never one of the
// bus's pool, which may hold a single connection), LISTENs on the log's
// channel and calls p.Wake for each notification from another process,
// until ctx is done (it returns nil) or the connection fails (it returns
// the error; the caller reconnects).
func (s *postgresStore) Listen(ctx context.Context, p store.ListenParams) error {
	cfg, err := pgx.ParseConfig(p.DSN)
	if err != nil {
		return fmt.Errorf("listen: parse DSN: %w", err)
	}
	if p.AppName != "" {
		cfg.RuntimeParams["application_name"] = p.AppName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen: connect: %w", err)
	}
	defer func() {
		closing, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Close(closing)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if p.Listening != nil {
		p.Listening()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen: %w", err)
		}
		if n.Payload != p.Self && p.Wake != nil {
			p.Wake()
		}
	}
}
