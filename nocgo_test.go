package eventbus_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the root package (MySQL or PostgreSQL users)
// must not link the cgo SQLite driver: it lives in package eventbus/sqlite.
func TestRootPackageLinksNoSQLiteDriver(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH:", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", "github.com/dddbus/eventbus").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages; expected the package's dependency closure:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/mattn/go-sqlite3") || strings.HasPrefix(dep, "gorm.io/driver/sqlite") {
			t.Errorf("the root package depends on %s; only package eventbus/sqlite may", dep)
		}
	}
}
