package eventbus_test

import (
	"os"
	"testing"

	"github.com/dddbus/eventbus/internal/conformance"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// RestartEnv enables TestServerRestart.
const restartEnv = "EVENTBUS_RESTART_TESTS"

// TestServerRestart stops and crashes private PostgreSQL and MariaDB servers
// (started from the installed binaries, on ports and data directories of
// their own) under a running producer and consumer, and counts every event.
// It never touches the shared servers. .ci/restart-tests runs it in a CI
// step of its own.
func TestServerRestart(t *testing.T) {
	onPrivateServers(t, conformance.ServerRestart)
}

// onPrivateServers runs test on a private PostgreSQL and a private MariaDB
// server, in parallel, if restartEnv is set.
func onPrivateServers(t *testing.T, test func(*testing.T, *dbtest.Server)) {
	if os.Getenv(restartEnv) == "" {
		t.Skipf("skipping: set %s=1 (or run .ci/restart-tests) to restart private database servers under a running bus", restartEnv)
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, dbtest.PrivatePostgres(t))
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		test(t, dbtest.PrivateMariaDB(t))
	})
}
