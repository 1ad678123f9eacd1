package eventbus_test

import (
	"os"
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
// the level of every transaction it runs. Until every part does, it runs
// only when EVENTBUS_TEST_SERIALIZABLE is set.
func TestConformanceSerializable(t *testing.T) {
	if os.Getenv("EVENTBUS_TEST_SERIALIZABLE") == "" {
		t.Skip("skipping: set EVENTBUS_TEST_SERIALIZABLE=1 to run the suite under a SERIALIZABLE default")
	}
	for _, target := range dbtest.SerializableTargets {
		t.Run(target.Name, func(t *testing.T) {
			conformance.Run(t, target)
		})
	}
}
