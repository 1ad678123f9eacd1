package main

import (
	"bytes"
	"strings"
	"testing"
)

// The example is part of the documentation: it must keep working.
func TestExampleRuns(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("example failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"order-3 rejected and rolled back",
		"shipping: carrier unavailable for order-1, will be retried",
		"shipping: parcel booked for order-1 (attempt 2)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "order-3, amount") {
		t.Errorf("the rolled-back order's event was delivered:\n%s", out.String())
	}
}
