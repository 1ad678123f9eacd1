// Package invoices holds an event type whose Go name is also used by
// package customers: the suite checks that the two never share a stored name.
package invoices

// Created is raised when an invoice is created.
type Created struct {
	InvoiceID string
	Amount    int
}
