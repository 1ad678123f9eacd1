package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/sqlite"
)

// target is the database the harness runs on: a MySQL/MariaDB database or a
// PostgreSQL schema of its own (cfg.dbName), or a SQLite file. Every run
// starts from reset, which drops and recreates it, and opens new pools, so
// runs never see each other's tables or cached statements.
type target struct {
	kind string // sqlite, mysql, postgres
	cfg  *config

	admin      *sql.DB // mysql, postgres: a pool on the server for DDL
	mysqlCfg   *mysqldrv.Config
	pgURL      *url.URL
	sqlitePath string
}

func newTarget(ctx context.Context, cfg *config) (*target, error) {
	t := &target{kind: cfg.db, cfg: cfg}
	switch cfg.db {
	case "sqlite":
		dir := cfg.sqliteDir
		if dir == "" {
			d, err := os.MkdirTemp("", "ebbench-*")
			if err != nil {
				return nil, err
			}
			dir = d
		}
		t.sqlitePath = filepath.Join(dir, cfg.dbName+".db")
	case "mysql":
		c, err := mysqldrv.ParseDSN(cfg.mysqlDSN)
		if err != nil {
			return nil, fmt.Errorf("mysql dsn: %w", err)
		}
		c.DBName = ""
		t.mysqlCfg = c
		if t.admin, err = sql.Open("mysql", c.FormatDSN()); err != nil {
			return nil, err
		}
	case "postgres":
		u, err := url.Parse(cfg.pgDSN)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("postgres dsn must be a postgres:// URL: %v", err)
		}
		t.pgURL = u
		if t.admin, err = sql.Open("pgx", u.String()); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown -db %q (want sqlite, mysql or postgres)", cfg.db)
	}
	if t.admin != nil {
		t.admin.SetMaxOpenConns(2)
		if err := t.admin.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.db, err)
		}
	}
	return t, nil
}

func (t *target) close() {
	if t.admin != nil {
		_ = t.admin.Close()
	}
}

// resetTimeout bounds reset: a competitor's abandoned run (see attempt)
// may still hold locks that would make the DROP wait for ever.
const resetTimeout = 2 * time.Minute

// reset drops and recreates the harness's database (schema, file), within
// resetTimeout.
func (t *target) reset(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, resetTimeout)
	defer cancel()
	name := t.cfg.dbName
	var stmts []string
	switch t.kind {
	case "sqlite":
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(t.sqlitePath + suffix); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	case "mysql":
		stmts = []string{"DROP DATABASE IF EXISTS " + name, "CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"}
	case "postgres":
		stmts = []string{"DROP SCHEMA IF EXISTS " + name + " CASCADE", "CREATE SCHEMA " + name}
	}
	for _, s := range stmts {
		if _, err := t.admin.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("reset %s: %s: %w", t.kind, s, err)
		}
	}
	return nil
}

// drop removes the harness's database at the end of a run.
func (t *target) drop(ctx context.Context) {
	switch t.kind {
	case "sqlite":
		_ = os.RemoveAll(filepath.Dir(t.sqlitePath))
	case "mysql":
		_, _ = t.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+t.cfg.dbName)
	case "postgres":
		_, _ = t.admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+t.cfg.dbName+" CASCADE")
	}
}

// dsn is the driver's DSN of the harness's database.
func (t *target) dsn() (driver, dsn string) {
	switch t.kind {
	case "sqlite":
		return "sqlite3", "file:" + t.sqlitePath + "?" + eventbus.SQLiteDSNParams
	case "mysql":
		c := t.mysqlCfg.Clone()
		c.DBName = t.cfg.dbName
		return "mysql", c.FormatDSN()
	default:
		u := *t.pgURL
		q := u.Query()
		q.Set("search_path", t.cfg.dbName)
		u.RawQuery = q.Encode()
		return "pgx", u.String()
	}
}

// openGorm returns a new GORM pool on the harness's database.
// poolIdle is every pool's idle connections, as a production pool is set:
// with database/sql's default of 2, a pool shared by 8 producers and the
// consumers closes and reopens connections all the time, and a new
// PostgreSQL connection starts a server process (measured: same-process
// latency p50 2.74 ms with the default, 1.23 ms with 64).
const poolIdle = 64

func (t *target) openGorm() (*gorm.DB, error) {
	_, dsn := t.dsn()
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	var db *gorm.DB
	var err error
	switch t.kind {
	case "sqlite":
		db, err = sqlite.Open(t.sqlitePath)
	case "mysql":
		db, err = gorm.Open(mysql.Open(dsn), cfg)
	default:
		db, err = gorm.Open(postgres.Open(dsn), cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t.kind, err)
	}
	if s, err := db.DB(); err == nil {
		s.SetMaxIdleConns(poolIdle)
	}
	return db, nil
}

// openSQL returns a new database/sql pool (same driver as GORM's).
func (t *target) openSQL() (*sql.DB, error) {
	driver, dsn := t.dsn()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t.kind, err)
	}
	db.SetMaxIdleConns(poolIdle)
	return db, nil
}

func closeGorm(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		_ = s.Close()
	}
}

// serverVersion names the database server.
func (t *target) serverVersion(ctx context.Context) string {
	q := "SELECT version()"
	var db *sql.DB
	switch t.kind {
	case "sqlite":
		s, err := t.openSQL()
		if err != nil {
			return "sqlite (unknown version)"
		}
		defer s.Close()
		db, q = s, "SELECT 'SQLite ' || sqlite_version()"
	case "mysql":
		db = t.admin
	default:
		db, q = t.admin, "SHOW server_version"
	}
	var v string
	if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return t.kind + " (unknown version)"
	}
	switch t.kind {
	case "mysql":
		return "MySQL/MariaDB " + v
	case "postgres":
		return "PostgreSQL " + v
	}
	return v
}

// settings lists the server settings that decide commit cost.
func (t *target) settings(ctx context.Context) string {
	var out string
	read := func(q string) string {
		var name, v string
		if err := t.admin.QueryRowContext(ctx, q).Scan(&name, &v); err != nil {
			return "?"
		}
		return v
	}
	switch t.kind {
	case "mysql":
		out = "innodb_flush_log_at_trx_commit=" + read("SHOW VARIABLES LIKE 'innodb_flush_log_at_trx_commit'") +
			", log_bin=" + read("SHOW VARIABLES LIKE 'log_bin'") +
			", innodb_buffer_pool_size=" + read("SHOW VARIABLES LIKE 'innodb_buffer_pool_size'")
	case "postgres":
		var sc, sb string
		_ = t.admin.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&sc)
		_ = t.admin.QueryRowContext(ctx, "SHOW shared_buffers").Scan(&sb)
		out = "synchronous_commit=" + sc + ", shared_buffers=" + sb
	case "sqlite":
		out = "WAL, synchronous=NORMAL (eventbus.SQLiteDSNParams)"
	}
	return out
}

// since is time.Since as seconds, for rates.
func since(t time.Time) float64 { return time.Since(t).Seconds() }
