package eventbus_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/dddbus/eventbus"
	ebsqlite "github.com/dddbus/eventbus/sqlite"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// A SQLite database opened without WAL and a busy timeout would fail under
// concurrent writers; the bus refuses it with a clear error instead.
func TestSQLiteWithoutWALIsRefused(t *testing.T) {
	db, err := gorm.Open(sqlite.Open(filepath.Join(t.TempDir(), "plain.db")), &gorm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = eventbus.NewEventBus("svc", db)
	if !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Fatalf("err %v, want ErrInvalidDB", err)
	}
}

func TestOpenSQLiteRejectsEmptyPath(t *testing.T) {
	if _, err := ebsqlite.Open(""); !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Fatalf("err %v, want ErrInvalidDB", err)
	}
}
