package eventbus

import (
	"net/url"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// openSQLite opens path as package eventbus/sqlite does; internal tests
// cannot import that package, which imports this one.
func openSQLite(path string) (*gorm.DB, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + SQLiteDSNParams
	return gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)})
}
