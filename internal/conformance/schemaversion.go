package conformance

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/migrations"
)

func init() {
	register("SchemaVersionCheckedWithoutAutoMigrate", testSchemaVersion)
}

// latestMigration is the highest embedded migration version of dialect.
func latestMigration(t testing.TB, dialect string) int {
	files, err := fs.Glob(migrations.FS, dialect+"/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no embedded migrations for %s: %v", dialect, err)
	}
	latest := 0
	for _, f := range files {
		num, _, _ := strings.Cut(path.Base(f), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("migration %s: %v", f, err)
		}
		latest = max(latest, v)
	}
	return latest
}

// With AutoMigrate off, NewEventBus fails at once on missing or outdated
// tables, naming the version found and the one needed.
func testSchemaVersion(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	need := latestMigration(t, tdb.Dialect)
	manual := eventbus.WithAutoMigrate(false)
	expect := func(what string, parts ...string) {
		t.Helper()
		_, err := eventbus.NewEventBus("svc", db, fastOptions(manual)...)
		if !errors.Is(err, eventbus.ErrSchemaVersion) {
			t.Fatalf("%s: NewEventBus err %v, want ErrSchemaVersion", what, err)
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %q does not say %q", what, err, p)
			}
		}
	}
	needs := "need " + strconv.Itoa(need)
	expect("no tables", "found none", needs)
	must(t, eventbus.Migrate(ctx, db, "ddd_"))
	must(t, db.Exec("DELETE FROM ddd_schema_migrations WHERE version = ?", need).Error)
	expect("outdated", "found "+strconv.Itoa(need-1), needs)
	must(t, db.Exec("INSERT INTO ddd_schema_migrations (version, applied_at) VALUES (?, 0)", need).Error)
	if _, err := eventbus.NewEventBus("svc", db, fastOptions(manual)...); err != nil {
		t.Fatalf("up to date: %v", err)
	}
	// Another prefix has no tables yet.
	if _, err := eventbus.NewEventBus("svc", db, fastOptions(manual, eventbus.WithTablePrefix("other_"))...); !errors.Is(err, eventbus.ErrSchemaVersion) {
		t.Fatalf("other prefix: err %v, want ErrSchemaVersion", err)
	}
	// A newer release's migration (they only add) does not stop this one.
	must(t, db.Exec("INSERT INTO ddd_schema_migrations (version, applied_at) VALUES (?, 0)", need+1000).Error)
	if _, err := eventbus.NewEventBus("svc", db, fastOptions(manual)...); err != nil {
		t.Fatalf("newer schema: %v", err)
	}
}
