package eventbus

import "context"

// CheckCallerTx runs Dispatch's check of the transaction ctx carries (the
// benchmark of what it costs needs it alone).
func CheckCallerTx(ctx context.Context, b *EventBus) error {
	_, _, err := b.st.CallerTx(ctx)
	return err
}
