// Package relay moves the events of an eventbus outbox to NATS JetStream and
// back: a Relay consumes the bus as a service of its own and publishes every
// event to a JetStream subject, and a Subscriber feeds a JetStream durable
// consumer to the same ddd.DomainEventHandler (typically a ddd.Router) that a
// bus service would run, with the bus's retry strategies and dead letters.
//
// It is a module of its own, so the core module does not depend on NATS.
//
// On the wire an event is one JetStream message: the payload is the
// message's data, the event id is the Nats-Msg-Id header (JetStream's
// duplicate window drops a second publish of it), and the other fields
// and the metadata are headers (see Encode and Decode). README.md of the
// repository ("Relay to NATS JetStream") states the guarantees.
package relay
