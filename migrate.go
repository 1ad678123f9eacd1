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
	d, err := dialectOf(db)
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	list, err := loadMigrations(d.name(), prefix)
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	unlock, err := d.lockMigrations(ctx, conn, prefix)
	if err != nil {
		return err
	}
	defer unlock()

	versions := prefix + "schema_migrations"
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+versions+
		" (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)"); err != nil {
		return fmt.Errorf("migrate: create %s: %w", versions, err)
	}
	for _, m := range list {
		if err := applyMigration(ctx, conn, d, versions, m); err != nil {
			return fmt.Errorf("migrate %s/%s: %w", d.name(), m.name, err)
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
func checkSchema(ctx context.Context, db *sql.DB, d dialect, prefix string) error {
	list, err := loadMigrations(d.name(), prefix)
	if err != nil {
		return err
	}
	need := list[len(list)-1].version
	versions := prefix + "schema_migrations"
	applied, err := appliedVersions(ctx, db, versions)
	if err != nil {
		if !tableExists(ctx, db, d, versions) {
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

// tableExists reports whether table exists where db's connections resolve
// unqualified names; false also when it cannot tell.
func tableExists(ctx context.Context, db *sql.DB, d dialect, table string) bool {
	var q string
	switch d.name() {
	case "postgres":
		q = "SELECT COUNT(*) FROM (SELECT to_regclass($1) AS t) r WHERE t IS NOT NULL"
	case "mysql":
		q = "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
	default:
		q = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	}
	var n int
	return db.QueryRowContext(ctx, q, table).Scan(&n) == nil && n > 0
}

// applyMigration runs m unless it is recorded. On SQLite and PostgreSQL the
// statements and the record share one transaction. MySQL commits DDL
// implicitly, so its files use IF NOT EXISTS and re-run safely after a crash.
func applyMigration(ctx context.Context, conn *sql.Conn, d dialect, versions string, m migration) error {
	// A raw BEGIN on the pinned connection, so SQLite can take the write
	// lock up front (BEGIN IMMEDIATE) whatever the DSN says.
	for _, stmt := range d.beginWrite() {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var n int
	if err := conn.QueryRowContext(ctx, d.rebind("SELECT COUNT(*) FROM "+versions+" WHERE version = ?"), m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil // applied by another process; the deferred ROLLBACK ends the transaction
	}
	for _, stmt := range m.statements {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	if _, err := conn.ExecContext(ctx, d.rebind("INSERT INTO "+versions+" (version, applied_at) VALUES (?, "+d.nowMillis()+")"), m.version); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	committed = true
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

// appliedVersions lists the versions recorded in table.
func appliedVersions(ctx context.Context, db *sql.DB, table string) ([]int64, error) {
	rows, err := db.QueryContext(ctx, "SELECT version FROM "+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
