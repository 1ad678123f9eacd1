// Package events holds an invoice event whose package and type names
// (events.Created) are the same as those of customers/events, for the
// tests of how event types are named.
package events

// Created is raised when an invoice is created.
type Created struct {
	InvoiceID string `json:"invoice_id"`
	Amount    int    `json:"amount"`
}
