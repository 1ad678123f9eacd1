package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// What the bus's migrations (migrate.go) need of a database, by its name
// (see database). The migrations themselves are embedded .sql files
// (migrations/).

// LockMigrations takes the lock that serialises migrations across
// processes on conn, and returns its release.
func LockMigrations(ctx context.Context, conn *sql.Conn, dialect, prefix string) (func(), error) {
	d, err := databaseNamed(dialect)
	if err != nil {
		return nil, err
	}
	return d.lockMigrations(ctx, conn, prefix)
}

// BeginWrite are the statements that start a READ COMMITTED transaction on
// a raw connection, holding the write lock from its first statement where
// the database needs it (SQLite).
func BeginWrite(dialect string) []string {
	d, err := databaseNamed(dialect)
	if err != nil {
		return nil
	}
	return d.beginWrite
}

// TableExists reports whether table exists where db's connections resolve
// unqualified names; false also when it cannot tell.
func TableExists(ctx context.Context, db *sql.DB, dialect, table string) bool {
	d, err := databaseNamed(dialect)
	return err == nil && d.tableExists(ctx, db, table)
}

// CreateVersions creates the table of applied versions unless it exists.
func CreateVersions(ctx context.Context, conn *sql.Conn, versions string) error {
	_, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+versions+
		" (version INT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)")
	return err
}

// ApplyMigration runs a migration's statements unless its version is recorded. On SQLite and PostgreSQL the
// statements and the record share one transaction. MySQL commits DDL
// implicitly, so its files use IF NOT EXISTS and re-run safely after a crash.
func ApplyMigration(ctx context.Context, conn *sql.Conn, dialect, versions string, version int, statements []string) error {
	d, err := databaseNamed(dialect)
	if err != nil {
		return err
	}
	// A raw BEGIN on the pinned connection, so SQLite can take the write
	// lock up front (BEGIN IMMEDIATE) whatever the DSN says.
	for _, stmt := range d.beginWrite {
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
	if err := conn.QueryRowContext(ctx, d.text.bind("SELECT COUNT(*) FROM "+versions+" WHERE version = ?"), version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil // applied by another process; the deferred ROLLBACK ends the transaction
	}
	for _, stmt := range statements {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	if _, err := conn.ExecContext(ctx, d.text.bind("INSERT INTO "+versions+" (version, applied_at) VALUES (?, "+d.text.now+")"), version); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	committed = true
	return nil
}

// AppliedVersions lists the versions recorded in table.
func AppliedVersions(ctx context.Context, db *sql.DB, table string) ([]int64, error) {
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
