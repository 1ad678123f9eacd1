package eventbus_test

import (
	"os"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/conformance"
)

// The suite shortens the set-aside delay through a hook of this package's tests.
func init() { conformance.ShortenSetAside = eventbus.ShortenSetAside }

// TestConformanceHelper is a second process, not a test: suite cases that
// need one (a standby taking over from a stopped instance) run this test
// binary again with conformance.HelperEnv set. Without it, it skips.
func TestConformanceHelper(t *testing.T) {
	if os.Getenv(conformance.HelperEnv) == "" {
		t.Skip("skipping: runs only as a child process of the conformance suite")
	}
	conformance.Helper(t)
}
