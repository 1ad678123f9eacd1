package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/dddbus/eventbus/sqlite"
	mysqldrv "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// database is an empty database of one round, dropped by drop.
type database struct {
	open func() (*gorm.DB, error) // a new pool each call, as another process has
	drop func()
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var gormCfg = &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}

// newDatabase makes a SQLite file, a MySQL database or a PostgreSQL schema
// of its own (named ebrelay_<random>) on the server of dsn.
func newDatabase(kind, dsn string) (*database, error) {
	name := "ebrelay_" + randomSuffix()
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", name)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "events.db")
		return &database{
			open: func() (*gorm.DB, error) { return sqlite.Open(path) },
			drop: func() { _ = os.RemoveAll(dir) },
		}, nil
	case "mysql":
		cfg, err := mysqldrv.ParseDSN(dsn)
		if err != nil {
			return nil, err
		}
		drop, err := adminExec("mysql", cfg.FormatDSN(), "CREATE DATABASE "+name, "DROP DATABASE IF EXISTS "+name)
		if err != nil {
			return nil, err
		}
		cfg.DBName = name
		return &database{open: func() (*gorm.DB, error) { return gorm.Open(mysql.Open(cfg.FormatDSN()), gormCfg) }, drop: drop}, nil
	case "postgres":
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, err
		}
		drop, err := adminExec("pgx", dsn, "CREATE SCHEMA "+name, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return &database{open: func() (*gorm.DB, error) { return gorm.Open(postgres.Open(u.String()), gormCfg) }, drop: drop}, nil
	}
	return nil, fmt.Errorf("unknown -db %q (sqlite, mysql, postgres)", kind)
}

// adminExec runs create now and returns a function that runs drop.
func adminExec(driver, dsn, create, drop string) (func(), error) {
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.Exec(create); err != nil {
		return nil, fmt.Errorf("%s: %w", create, err)
	}
	return func() {
		if admin, err := sql.Open(driver, dsn); err == nil {
			_, _ = admin.Exec(drop)
			admin.Close()
		}
	}, nil
}
