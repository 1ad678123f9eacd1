package eventbus_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/dddbus/eventbus"
	ebsqlite "github.com/dddbus/eventbus/sqlite"
	"gorm.io/gorm"
)

var errPool = errors.New("pool unavailable")

// brokenPool is a GORM connection pool whose *sql.DB cannot be had.
type brokenPool struct{ gorm.ConnPool }

func (brokenPool) GetDBConn() (*sql.DB, error) { return nil, errPool }

// NewEventBus and Migrate keep the cause of an unusable *gorm.DB in the
// error chain beside ErrInvalidDB.
func TestInvalidDBKeepsTheCause(t *testing.T) {
	db, err := ebsqlite.Open(filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	broken := db.Session(&gorm.Session{NewDB: true})
	broken.Statement.ConnPool = brokenPool{}
	broken.ConnPool = brokenPool{}

	_, err = eventbus.NewEventBus("svc", broken)
	if !errors.Is(err, eventbus.ErrInvalidDB) || !errors.Is(err, errPool) {
		t.Errorf("NewEventBus: %v; want it to wrap ErrInvalidDB and the pool's error", err)
	}
	err = eventbus.Migrate(t.Context(), broken, "ddd_")
	if !errors.Is(err, eventbus.ErrInvalidDB) || !errors.Is(err, errPool) {
		t.Errorf("Migrate: %v; want it to wrap ErrInvalidDB and the pool's error", err)
	}
}
