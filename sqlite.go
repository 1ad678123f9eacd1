package eventbus

import (
	"fmt"
	"net/url"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// SQLiteDSNParams are the DSN parameters (mattn/go-sqlite3) the bus needs on
// SQLite: WAL so the poller's reads never block writers, a busy timeout so
// concurrent writers wait for the lock instead of failing with "database is
// locked", and BEGIN IMMEDIATE so a transaction that reads before it writes
// cannot fail when upgrading its lock. synchronous=NORMAL is safe with WAL:
// a power loss may drop the last commits but never corrupts the file.
const SQLiteDSNParams = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1"

// OpenSQLite opens (creating if needed) the SQLite database file at path with
// SQLiteDSNParams. GORM's own logging is silenced; pass opts to change that.
func OpenSQLite(path string, opts ...gorm.Option) (*gorm.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty sqlite path", ErrInvalidDB)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + SQLiteDSNParams
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	db, err := gorm.Open(sqlite.Open(dsn), append([]gorm.Option{cfg}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}
