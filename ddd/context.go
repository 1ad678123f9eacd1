package ddd

import (
	"context"

	"gorm.io/gorm"
)

type txKey struct{}

// ContextWithTx returns a context carrying tx, a GORM transaction. The bus
// writes events with it, so they commit or roll back with the business change.
func ContextWithTx(ctx context.Context, tx *gorm.DB) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFromContext returns the transaction carried by ctx, if any.
func TxFromContext(ctx context.Context) (*gorm.DB, bool) {
	tx, ok := ctx.Value(txKey{}).(*gorm.DB)
	return tx, ok && tx != nil
}
