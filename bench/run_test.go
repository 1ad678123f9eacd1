package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// smokeConfig is a small run on a SQLite file (no server needed): the
// drain and correctness scenarios, eventbus and the raw baseline.
func smokeConfig(t *testing.T) *config {
	return &config{
		db: "sqlite", sqliteDir: t.TempDir(), dbName: "ebtest",
		n: 300, slowN: 300, rounds: 1, producers: 2,
		scenarios:   map[string]bool{"drain": true, "correctness": true},
		correctN:    200,
		correctRate: 2000,
		correctPoll: 20 * time.Millisecond,

		contestantTimeout: time.Minute,
	}
}

// withFailHook makes the runs fail names fail, for one test.
func withFailHook(t *testing.T, fail func(runID) bool) {
	failHook = func(id runID) error {
		if fail(id) {
			return errors.New("injected failure")
		}
		return nil
	}
	t.Cleanup(func() { failHook = nil })
}

func TestRunGoesOnAfterCompetitorErrors(t *testing.T) {
	withFailHook(t, func(id runID) bool { return id.sys == sysRaw })
	var out bytes.Buffer
	if err := run(context.Background(), smokeConfig(t), &out); err != nil {
		t.Fatalf("the raw baseline's errors failed the run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"| Drain 300, no-op handler, 1 service, incl. sequencing | events/s ↑ |", // the speed table
		"| correctness | eventbus | 1 | 200 | 200 | 0 |",                         // eventbus ran on
		"eventbus [", "raw SQL [—]", // the failed round in every round's figures
		"Contestant errors",
		"| drain | raw SQL | 1 |  | injected failure |",
		"| correctness | raw SQL | 1 |  | injected failure |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(s, "| correctness | raw SQL | 1 | 200") {
		t.Error("the failed raw run has a delivery line")
	}
	if t.Failed() {
		t.Log(s)
	}
}

func TestRunFailsOnEventbusError(t *testing.T) {
	withFailHook(t, func(id runID) bool { return id.sys == sysLib && id.scenario == "correctness" })
	var out bytes.Buffer
	err := run(context.Background(), smokeConfig(t), &out)
	if err == nil || !strings.Contains(err.Error(), "correctness: correctness, eventbus, round 1: injected failure") {
		t.Fatalf("run = %v, want eventbus's correctness error", err)
	}
	// What the finished scenarios measured is still printed.
	if s := out.String(); !strings.Contains(s, "| Drain 300, no-op handler, 1 service, incl. sequencing |") {
		t.Errorf("the drain table is missing:\n%s", s)
	}
}
