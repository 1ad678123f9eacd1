package eventbus_test

import (
	"testing"

	"github.com/dddbus/eventbus/internal/conformance"
)

// TestServerRestartTxIDs checks, on private PostgreSQL and MariaDB servers
// stopped cleanly and crashed, that committed ids are never reused and that
// a transactional message's context resolves only its own transaction
// whatever the ids. Enabled like TestServerRestart.
func TestServerRestartTxIDs(t *testing.T) {
	onPrivateServers(t, conformance.TxIDsAcrossRestart)
}
