package layout

import (
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/store/sqlstore"
)

// The store names the SQLite DSN parameters in its error for a misopened
// database; they must be the ones the bus opens SQLite with.
func TestSQLiteDSNParamsAgree(t *testing.T) {
	if sqlstore.SQLiteDSNParams != eventbus.SQLiteDSNParams {
		t.Fatalf("sqlstore.SQLiteDSNParams %q, eventbus.SQLiteDSNParams %q", sqlstore.SQLiteDSNParams, eventbus.SQLiteDSNParams)
	}
}
