package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/dddbus/eventbus/internal/store/sqlstore"
	"github.com/dddbus/eventbus/migrations"
	"gorm.io/gorm"
)

type migration struct {
	version    int
	name       string
	statements []string
}

// Migrate applies the embedded migrations of db's dialect for the tables
// named with prefix. It is safe to run from several processes at once: a
// database lock (advisory lock on PostgreSQL, GET_LOCK on MySQL, the write
// lock on SQLite) serialises them, and applied versions are recorded in
// <prefix>schema_migrations. NewEventBus calls it unless AutoMigrate is off.
func Migrate(ctx context.Context, db *gorm.DB, prefix string) error {
	if db == nil {
		return fmt.Errorf("%w: nil db", ErrInvalidDB)
	}
	if !tablePrefixRE.MatchString(prefix) {
		return fmt.Errorf("%w: TablePrefix %q must match %s", ErrInvalidOption, prefix, tablePrefixRE)
	}
	name, err := dialectName(db)
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	list, err := loadMigrations(name, prefix)
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	unlock, err := sqlstore.LockMigrations(ctx, conn, name, prefix)
	if err != nil {
		return err
	}
	defer unlock()

	versions := prefix + "schema_migrations"
	if err := sqlstore.CreateVersions(ctx, conn, versions); err != nil {
		return fmt.Errorf("migrate: create %s: %w", versions, err)
	}
	for _, m := range list {
		if err := sqlstore.ApplyMigration(ctx, conn, name, versions, m.version, m.statements); err != nil {
			return fmt.Errorf("migrate %s/%s: %w", name, m.name, err)
		}
	}
	return nil
}

// checkSchema returns an error wrapping ErrSchemaVersion unless every
// embedded migration of d for prefix is recorded as applied: what
// NewEventBus checks when AutoMigrate is off, so that a missing or outdated
// schema fails at once rather than in every poll of Start. Versions newer
// than this release's (applied by a newer release, whose migrations only
// add) are accepted.
func checkSchema(ctx context.Context, db *sql.DB, dialect, prefix string) error {
	list, err := loadMigrations(dialect, prefix)
	if err != nil {
		return err
	}
	need := list[len(list)-1].version
	versions := prefix + "schema_migrations"
	applied, err := sqlstore.AppliedVersions(ctx, db, versions)
	if err != nil {
		if !sqlstore.TableExists(ctx, db, dialect, versions) {
			return fmt.Errorf("%w: found none (no table %s), need %d: run eventbus.Migrate or turn AutoMigrate on",
				ErrSchemaVersion, versions, need)
		}
		return fmt.Errorf("check schema version: %w", err)
	}
	have := map[int64]bool{}
	found := int64(0)
	for _, v := range applied {
		have[v] = true
		found = max(found, v)
	}
	var missing []string
	for _, m := range list {
		if !have[int64(m.version)] {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: found %d, need %d (not applied: %s): run eventbus.Migrate or turn AutoMigrate on",
			ErrSchemaVersion, found, need, strings.Join(missing, ", "))
	}
	return nil
}

func loadMigrations(dir, prefix string) ([]migration, error) {
	entries, err := fs.ReadDir(migrations.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", dir, err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s/%s is not named NNNN_name.sql", dir, name)
		}
		body, err := fs.ReadFile(migrations.FS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, statements: splitStatements(strings.ReplaceAll(string(body), "{{prefix}}", prefix))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// splitStatements splits on ";" at the end of a line, except inside a
// $$-quoted body (a PostgreSQL function), and drops "--" comment lines. A
// "DELIMITER x" line, as in the mysql client, makes x end a statement
// instead of ";" until the next one: a MySQL routine's body holds ";".
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	inBody := false
	delim := ";"
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		if d, ok := strings.CutPrefix(trimmed, "DELIMITER "); ok && !inBody && cur.Len() == 0 {
			delim = strings.TrimSpace(d)
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.Count(line, "$$")%2 == 1 {
			inBody = !inBody
		}
		if !inBody && strings.HasSuffix(trimmed, delim) {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), delim))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// dialectName names db's dialect, one of those the store serves.
func dialectName(db *gorm.DB) (string, error) {
	if db == nil || db.Config == nil || db.Dialector == nil {
		return "", fmt.Errorf("%w: a nil or zero *gorm.DB (open it with gorm.Open)", ErrInvalidDB)
	}
	switch n := db.Dialector.Name(); n {
	case "sqlite", "mysql", "postgres":
		return n, nil
	default:
		return "", fmt.Errorf("%w: unsupported dialect %q (want sqlite, mysql or postgres)", ErrInvalidDB, n)
	}
}
