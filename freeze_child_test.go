//go:build linux

package eventbus_test

import (
	"testing"

	"github.com/dddbus/eventbus/internal/conformance"
)

// TestFrozenSequencerChild is the child process of the conformance test
// SequencerFrozenProcessDoesNotStopOthers, which starts this test binary
// again to run it; on its own it skips.
func TestFrozenSequencerChild(t *testing.T) {
	if !conformance.IsFrozenChild() {
		t.Skip("the child process of the conformance test SequencerFrozenProcessDoesNotStopOthers")
	}
	conformance.RunFrozenChild(t)
}
