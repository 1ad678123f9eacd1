package main

import (
	"context"
	"io"

	"gorm.io/gorm"
)

// runTransactions demonstrates transactional (half) messages.
func runTransactions(ctx context.Context, db *gorm.DB, out io.Writer) error { return nil }
