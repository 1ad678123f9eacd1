// Package events holds a customer event whose package and type names
// (events.Created) are the same as those of invoices/events, for the
// tests of how event types are named.
package events

// Created is raised when a customer is created.
type Created struct {
	CustomerID string `json:"customer_id"`
	Name       string `json:"name"`
}
