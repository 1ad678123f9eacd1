package ddd

// EventSource is anything that buffers events for the Engine to collect,
// typically an aggregate embedding Events.
type EventSource interface {
	PopEvents() []*DomainEvent
}

// Events buffers the events an aggregate raises until the Engine collects
// them. Embed it in an aggregate (tag it `gorm:"-"` in GORM models).
type Events struct {
	pending []*DomainEvent
}

// Raise builds an event from value, sent by sender (the aggregate's ID), and
// buffers it. It returns NewDomainEvent's error for a value it cannot encode.
func (e *Events) Raise(sender string, value any, opts ...EventOption) error {
	evt, err := NewDomainEvent(sender, value, opts...)
	if err != nil {
		return err
	}
	e.pending = append(e.pending, evt)
	return nil
}

// PopEvents returns the buffered events and clears the buffer.
func (e *Events) PopEvents() []*DomainEvent {
	out := e.pending
	e.pending = nil
	return out
}
