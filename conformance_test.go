package eventbus_test

import (
	"testing"

	"github.com/dddbus/eventbus/internal/conformance"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestConformance runs the shared suite on every database. MySQL and
// PostgreSQL need EVENTBUS_MYSQL_DSN and EVENTBUS_POSTGRES_DSN; without them
// those subtests skip and say so.
func TestConformance(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			conformance.Run(t, target)
		})
	}
}

// TestConformanceSerializable runs the suite on MySQL and PostgreSQL with
// SERIALIZABLE as the session default isolation level: the bus must state
// the level of every transaction it runs, not inherit the server's.
func TestConformanceSerializable(t *testing.T) {
	for _, target := range dbtest.SerializableTargets {
		t.Run(target.Name, func(t *testing.T) {
			conformance.Run(t, target)
		})
	}
}
