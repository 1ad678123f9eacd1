// Package conformance is the test suite every database must pass: the same
// tests run on SQLite, MySQL/MariaDB and PostgreSQL, each in a database of
// its own (see dbtest).
package conformance

import (
	"testing"

	"github.com/dddbus/eventbus/internal/dbtest"
)

type testCase struct {
	name string
	fn   func(t *testing.T, db *dbtest.Database)
}

// cases lists every test of the suite; each file adds its own in init.
var cases []testCase

func register(name string, fn func(t *testing.T, db *dbtest.Database)) {
	cases = append(cases, testCase{name: name, fn: fn})
}

// Run runs the whole suite on target, tests in parallel.
func Run(t *testing.T, target dbtest.Target) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, target.New(t))
		})
	}
}
