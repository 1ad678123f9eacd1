//go:build linux

package conformance

/*
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
extern sqlite3_stmt *sqlite3_next_stmt(sqlite3 *, sqlite3_stmt *);
extern int sqlite3_stmt_busy(sqlite3_stmt *);
extern int sqlite3_stmt_readonly(sqlite3_stmt *);
extern const char *sqlite3_sql(sqlite3_stmt *);
extern int sqlite3_get_autocommit(sqlite3 *);
extern int sqlite3_txn_state(sqlite3 *, const char *);
*/
import "C"

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"unsafe"

	"github.com/mattn/go-sqlite3"
)

// sqliteConnState describes c for the failure output of
// SequencerFrozenProcessDoesNotStopOthers: its transaction state, the
// statements that have started and not been reset or finalized (those hold
// a transaction open), and the file locks on its database (by every
// process) as it reports them.
func sqliteConnState(c *sqlite3.SQLiteConn) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d; file locks:\n%s", os.Getpid(), fileLocks(c.GetFilename("")))
	// The driver does not export its handle: read its field "db", if the
	// driver still has one.
	f := reflect.ValueOf(c).Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Pointer {
		return b.String() + "(no handle field in mattn/go-sqlite3's SQLiteConn)\n"
	}
	db := (*C.sqlite3)(unsafe.Pointer(f.Pointer()))
	fmt.Fprintf(&b, "autocommit %d txn_state %d\n", C.sqlite3_get_autocommit(db), C.sqlite3_txn_state(db, nil))
	for st := C.sqlite3_next_stmt(db, nil); st != nil; st = C.sqlite3_next_stmt(db, st) {
		if C.sqlite3_stmt_busy(st) != 0 {
			fmt.Fprintf(&b, "busy (readonly %d): %.200s\n", C.sqlite3_stmt_readonly(st), C.GoString(C.sqlite3_sql(st)))
		}
	}
	return b.String()
}
