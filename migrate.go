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
		return fmt.Errorf("%w: %v", ErrInvalidDB, err)
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

// applyMigration runs m unless it is recorded. On SQLite and PostgreSQL the
// statements and the record share one transaction. MySQL commits DDL
// implicitly, so its files use IF NOT EXISTS and re-run safely after a crash.
func applyMigration(ctx context.Context, conn *sql.Conn, d dialect, versions string, m migration) error {
	// A raw BEGIN on the pinned connection, so SQLite can take the write
	// lock up front (BEGIN IMMEDIATE) whatever the DSN says.
	if _, err := conn.ExecContext(ctx, d.beginWrite()); err != nil {
		return err
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
