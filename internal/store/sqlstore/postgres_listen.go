package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/internal/store"
	"github.com/jackc/pgx/v5"
)

// closeTimeout bounds closing the listener's connection.
const closeTimeout = 5 * time.Second

// Listen opens a connection of its own from p.DSN (never one of the
// bus's pool, which may hold a single connection), LISTENs on the log's
// channel and calls p.Wake for each notification from another process,
// until ctx is done (it returns nil) or the connection fails (it returns
// the error; the caller reconnects).
func (s *Store) Listen(ctx context.Context, p store.ListenParams) error {
	if !s.Announces() {
		return fmt.Errorf("%w: %s has no LISTEN/NOTIFY", errors.ErrUnsupported, s.d.name())
	}
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
