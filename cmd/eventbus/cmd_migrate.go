package main

import (
	"context"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/migrations"
)

func init() {
	commands = append(commands,
		command{path: "migrate up", summary: "apply the embedded migrations (creates a missing SQLite file)", run: migrateUp},
		command{path: "migrate status", summary: "list migrations, applied or pending (exit 3 if any is pending)", run: migrateStatus},
	)
}

// migrationRow is one migration in "migrate status".
type migrationRow struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	AppliedAt *time.Time `json:"applied_at"` // null: pending
}

func migrateUp(ctx context.Context, c *cli, _ *opts, args []string) error {
	if len(args) > 0 {
		return usageErr("migrate up takes no arguments")
	}
	c.create = true
	db, err := c.open(ctx)
	if err != nil {
		return err
	}
	if err := eventbus.Migrate(ctx, db, c.prefix); err != nil {
		return err
	}
	rows, err := c.migrations(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(rows)
	}
	c.say("schema up to date: version %d", rows[len(rows)-1].Version)
	return nil
}

func migrateStatus(ctx context.Context, c *cli, _ *opts, args []string) error {
	if len(args) > 0 {
		return usageErr("migrate status takes no arguments")
	}
	rows, err := c.migrations(ctx)
	if err != nil {
		return err
	}
	pending := 0
	if c.json {
		if err := c.printJSON(rows); err != nil {
			return err
		}
	} else {
		var table [][]string
		for _, r := range rows {
			applied := "pending"
			if r.AppliedAt != nil {
				applied = fmtTime(*r.AppliedAt)
			}
			table = append(table, []string{strconv.Itoa(r.Version), r.Name, applied})
		}
		if err := c.table([]string{"VERSION", "NAME", "APPLIED"}, table); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if r.AppliedAt == nil {
			pending++
		}
	}
	if pending > 0 {
		return notFound("%d migration(s) pending: run 'eventbus migrate up'", pending)
	}
	return nil
}

// migrations lists the embedded migrations of the database's dialect and
// when each was applied.
func (c *cli) migrations(ctx context.Context) ([]migrationRow, error) {
	db, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	dialect := db.Dialector.Name()
	entries, err := fs.ReadDir(migrations.FS, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", dialect, err)
	}
	applied := map[int]int64{}
	var versions []struct {
		Version   int
		AppliedAt int64
	}
	// A missing table means nothing was applied yet.
	if db.Migrator().HasTable(c.prefix + "schema_migrations") {
		if err := db.WithContext(ctx).Raw("SELECT version, applied_at FROM " + c.prefix + "schema_migrations").Scan(&versions).Error; err != nil {
			return nil, fmt.Errorf("read applied migrations: %w", err)
		}
	}
	for _, v := range versions {
		applied[v.Version] = v.AppliedAt
	}
	var out []migrationRow
	for _, e := range entries {
		num, name, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		r := migrationRow{Version: v, Name: name}
		if at, ok := applied[v]; ok {
			t := time.UnixMilli(at).UTC()
			r.AppliedAt = &t
		}
		out = append(out, r)
	}
	return out, nil
}
