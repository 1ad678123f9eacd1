package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/dddbus/eventbus/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// splitDSN returns the driver and the driver's own DSN: from --driver, or
// from the DSN's prefix.
func splitDSN(driver, dsn string) (string, string, error) {
	if dsn == "" {
		return "", "", usageErr("no database: set --dsn or EVENTBUS_DSN (sqlite:PATH, mysql:USER@tcp(HOST:PORT)/DB, postgres://...)")
	}
	if driver != "" {
		switch driver {
		case "sqlite", "mysql", "postgres":
			return driver, dsn, nil
		}
		return "", "", usageErr("--driver must be sqlite, mysql or postgres, got %q", driver)
	}
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return "postgres", dsn, nil
	}
	for _, d := range []string{"sqlite", "mysql", "postgres"} {
		for _, p := range []string{d + "://", d + ":"} {
			if rest, ok := strings.CutPrefix(dsn, p); ok && rest != "" {
				return d, rest, nil
			}
		}
	}
	return "", "", usageErr("cannot tell the driver of the DSN: prefix it with sqlite:, mysql: or postgres://, or pass --driver")
}

// open connects to the database once per run.
func (c *cli) open(ctx context.Context) (*gorm.DB, error) {
	if c.db != nil {
		return c.db, nil
	}
	driver, dsn, err := splitDSN(c.driver, c.dsn)
	if err != nil {
		return nil, err
	}
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	var db *gorm.DB
	switch driver {
	case "sqlite":
		// Opening creates a missing file: an operator's typo must not
		// look like an empty store (only "migrate up" creates one).
		if _, err := os.Stat(dsn); err != nil && !c.create {
			return nil, fmt.Errorf("sqlite database %s: %w", dsn, err)
		}
		db, err = sqlite.Open(dsn)
	case "mysql":
		db, err = gorm.Open(mysql.Open(dsn), cfg)
	case "postgres":
		db, err = gorm.Open(postgres.Open(dsn), cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", driver, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(4)
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect to the %s database: %w", driver, err)
	}
	c.db = db
	return db, nil
}
