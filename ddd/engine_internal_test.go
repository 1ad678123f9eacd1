package ddd

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqlStateError is an error a server answered with, as pgx's PgError.
type sqlStateError string

func (e sqlStateError) Error() string    { return "server error " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

// A COMMIT error proves a rollback only when nothing can have been lost:
// SQLite (in the process), or a server's answer that rolls back.
func TestRolledBackOnlyWhenCertain(t *testing.T) {
	on := func(d gorm.Dialector) *gorm.DB { return &gorm.DB{Config: &gorm.Config{Dialector: d}} }
	pg, my, lite := on(postgres.New(postgres.Config{})), on(mysql.New(mysql.Config{})), on(sqlite.Open(""))
	cases := []struct {
		db   *gorm.DB
		err  error
		want bool
	}{
		{lite, errors.New("FOREIGN KEY constraint failed"), true},
		{pg, fmt.Errorf("commit: %w", sqlStateError("40001")), true}, // serialization failure
		{pg, sqlStateError("23503"), true},                           // deferred foreign key
		{pg, sqlStateError("57P01"), false},                          // terminated: may have committed locally
		{pg, sqlStateError("08006"), false},                          // connection failure
		{pg, io.ErrUnexpectedEOF, false},                             // reply lost
		{my, errors.New("invalid connection"), false},
		{my, errors.New("Error 1213 (40001): Deadlock found"), false}, // no SQLSTATE method: unknown
	}
	for _, c := range cases {
		if got := rolledBack(c.db, c.err); got != c.want {
			t.Errorf("rolledBack(%s, %v) = %t, want %t", c.db.Dialector.Name(), c.err, got, c.want)
		}
	}
}
