// Package customers holds an event type whose Go name is also used by
// package invoices: the suite checks that the two never share a stored name.
package customers

// Created is raised when a customer is created.
type Created struct {
	CustomerID string
	Name       string
}
