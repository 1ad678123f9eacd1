// Package ddd holds the small set of framework contracts the event bus plugs
// into: the DomainEvent, handler and TX-checker types, the bus interfaces, a
// typed handler Router, an aggregate base, and a minimal unit-of-work Engine.
//
// It stands in for the host framework (bytedance/dddfirework), which is not
// available from the Go module proxy. Nothing here is global: routers and
// engines are values the application creates and wires together.
package ddd
