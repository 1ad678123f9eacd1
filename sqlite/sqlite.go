// Package sqlite opens a SQLite database for the bus. It lives apart from
// package eventbus because the SQLite driver (mattn/go-sqlite3) needs cgo:
// a program that only uses MySQL or PostgreSQL imports eventbus alone and
// links no C code. The bus itself recognises SQLite through GORM's
// Dialector.Name, so a *gorm.DB opened any other way works too, provided
// its DSN carries DSNParams.
package sqlite

import (
	"fmt"
	"net/url"

	"github.com/dddbus/eventbus"
	gormsqlite "gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DSNParams are the DSN parameters (mattn/go-sqlite3) the bus needs on
// SQLite; see eventbus.SQLiteDSNParams, which NewEventBus checks for.
const DSNParams = eventbus.SQLiteDSNParams

// Open opens (creating if needed) the SQLite database file at path with
// DSNParams. GORM's own logging is silenced; pass opts to change that. An
// empty path is refused with an error wrapping eventbus.ErrInvalidDB.
func Open(path string, opts ...gorm.Option) (*gorm.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty sqlite path", eventbus.ErrInvalidDB)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + DSNParams
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	db, err := gorm.Open(gormsqlite.Open(dsn), append([]gorm.Option{cfg}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}
