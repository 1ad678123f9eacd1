package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus/sqlite"
)

// The transactional demo checks its own outcomes and fails on a wrong one.
func TestTransactionalDemo(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runTransactionalDemo(ctx, db, &out); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"checker:  asked about entry-3 (1 event) -> commit",
		"audit:    entry-1 on acct-1, amount 100",
		"audit:    entry-3 on acct-1, amount 40",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "audit:    entry-2") {
		t.Errorf("the rolled-back entry was audited:\n%s", out.String())
	}
}
