package eventbus

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// The deprecated TX-spelled settings still take effect, however they are
// set, and the Tx-spelled ones win when both are.
func TestDeprecatedTXSettingsStillApply(t *testing.T) {
	db, err := openSQLite(filepath.Join(t.TempDir(), "cfg.db"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		opts  []Option
		check func(Config) bool
	}{
		{"WithTXCheckTimeout", []Option{WithTXCheckTimeout(5 * time.Second)},
			func(c Config) bool { return c.TxCheckTimeout == 5*time.Second }},
		{"old field through an Options func", []Option{func(o *Options) { o.TXCheckMaxChecks = 3; o.TXCheckCallTimeout = time.Second }},
			func(c Config) bool { return c.TxCheckMaxChecks == 3 && c.TxCheckCallTimeout == time.Second }},
		{"new name wins", []Option{WithTxCheckTimeout(7 * time.Second), func(o *Options) { o.TXCheckTimeout = 9 * time.Second }},
			func(c Config) bool { return c.TxCheckTimeout == 7*time.Second }},
		{"defaults", nil,
			func(c Config) bool { return c.TxCheckTimeout == time.Minute && c.TxCheckMaxChecks == 10 }},
	}
	for _, tc := range cases {
		b, err := NewEventBus("svc", db, append([]Option{WithCleanCron("")}, tc.opts...)...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.check(b.opts) {
			t.Errorf("%s: config %+v", tc.name, b.opts)
		}
		if b.opts.TXCheckTimeout != b.opts.TxCheckTimeout || b.opts.TXCheckMaxChecks != b.opts.TxCheckMaxChecks ||
			b.opts.TXCheckCallTimeout != b.opts.TxCheckCallTimeout {
			t.Errorf("%s: the deprecated fields disagree with their successors: %+v", tc.name, b.opts)
		}
	}
	// An out-of-range value through the old field is refused like one through the new.
	_, err = NewEventBus("svc", db, func(o *Options) { o.TXCheckMaxChecks = 0 })
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("TXCheckMaxChecks 0: err %v, want ErrInvalidOption", err)
	}
	// Code reading the defaults through the old names sees them.
	if d := DefaultOptions(); d.TXCheckTimeout != time.Minute || d.TXCheckMaxChecks != 10 || d.TXCheckCallTimeout != 30*time.Second {
		t.Fatalf("DefaultOptions: TXCheck* %s %d %s", d.TXCheckTimeout, d.TXCheckMaxChecks, d.TXCheckCallTimeout)
	}
}
