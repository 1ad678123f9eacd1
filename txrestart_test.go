package eventbus_test

import (
	"os"
	"testing"

	"github.com/dddbus/eventbus/internal/conformance"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestServerRestartTxIDs checks, on private PostgreSQL and MariaDB servers
// stopped cleanly and crashed, that committed ids are never reused and that
// a transactional message's context resolves only its own transaction
// whatever the ids. Enabled like TestServerRestart.
func TestServerRestartTxIDs(t *testing.T) {
	if os.Getenv(restartEnv) == "" {
		t.Skipf("skipping: set %s=1 (or run .ci/restart-tests) to restart private database servers", restartEnv)
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		conformance.TxIDsAcrossRestart(t, dbtest.PrivatePostgres(t))
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		conformance.TxIDsAcrossRestart(t, dbtest.PrivateMariaDB(t))
	})
}
