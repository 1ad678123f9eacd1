package ddd

import (
	"context"
	"database/sql"
	"errors"

	"gorm.io/gorm"
)

type txKey struct{}

// ErrForeignTransaction is returned by a bus given a transaction on
// another database than its own. It is eventbus.ErrForeignTransaction.
var ErrForeignTransaction = errors.New("transaction belongs to another database")

// ContextWithTx returns a context carrying tx, a GORM transaction. The bus
// writes events with it, so they commit or roll back with the business
// change. A nil ctx is taken as context.Background().
//
// The bus accepts a transaction on its own database from any connection
// pool; it refuses (with an error, before writing) a nil or zero *gorm.DB,
// one that is not in a transaction, and one on another database.
func ContextWithTx(ctx context.Context, tx *gorm.DB) context.Context {
	return withTx(ctx, tx)
}

// ContextWithSQLTx returns a context carrying tx, a database/sql
// transaction, for applications that do not use GORM. It replaces a
// transaction attached earlier; the same rules as ContextWithTx apply.
func ContextWithSQLTx(ctx context.Context, tx *sql.Tx) context.Context {
	return withTx(ctx, tx)
}

func withTx(ctx context.Context, tx any) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFromContext returns the GORM transaction carried by ctx, if any.
func TxFromContext(ctx context.Context) (*gorm.DB, bool) {
	tx, _ := CarriedTx(ctx)
	g, ok := tx.(*gorm.DB)
	return g, ok && g != nil
}

// SQLTxFromContext returns the database/sql transaction carried by ctx, if any.
func SQLTxFromContext(ctx context.Context) (*sql.Tx, bool) {
	tx, _ := CarriedTx(ctx)
	s, ok := tx.(*sql.Tx)
	return s, ok && s != nil
}

// CarriedTx returns what the latest ContextWithTx or ContextWithSQLTx
// attached to ctx: a *gorm.DB or a *sql.Tx, possibly nil. ok is false if
// neither was called. A bus uses it to refuse a nil transaction rather
// than write outside the caller's transaction.
func CarriedTx(ctx context.Context) (tx any, ok bool) {
	if ctx == nil {
		return nil, false
	}
	tx = ctx.Value(txKey{})
	switch tx.(type) {
	case *gorm.DB, *sql.Tx:
		return tx, true
	}
	return nil, false
}
