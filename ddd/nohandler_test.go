package ddd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/dddbus/eventbus/ddd"
)

// notMine says it is ErrNoHandler through an Is method.
type notMine struct{}

func (notMine) Error() string        { return "not mine" }
func (notMine) Is(target error) bool { return target == ddd.ErrNoHandler }

func TestIsNoHandler(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ddd.ErrNoHandler, true},
		{fmt.Errorf("billing: %w", ddd.ErrNoHandler), true},
		{errors.Join(ddd.ErrNoHandler, fmt.Errorf("x: %w", ddd.ErrNoHandler)), true},
		{notMine{}, true},
		{boom, false},
		{errors.Join(boom, ddd.ErrNoHandler), false},
		{errors.Join(ddd.ErrNoHandler, boom), false},
		{fmt.Errorf("%w and %w", ddd.ErrNoHandler, boom), false},
		{fmt.Errorf("outer: %w", errors.Join(boom, ddd.ErrNoHandler)), false},
		{ddd.Permanent(ddd.ErrNoHandler), true},
		{errors.Join(), false},
	}
	for i, c := range cases {
		if got := ddd.IsNoHandler(c.err); got != c.want {
			t.Errorf("case %d: IsNoHandler(%v) = %t, want %t", i, c.err, got, c.want)
		}
	}
}

// A router's handlers for one type that answer ErrNoHandler (a nested router
// without a route) do not turn a failure or a success into "no handler".
func TestRouterComposesNoHandler(t *testing.T) {
	evt, err := ddd.NewDomainEvent("o1", Shipped{ID: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	failing := func(context.Context, *ddd.DomainEvent) error { return boom }
	ok := func(context.Context, *ddd.DomainEvent) error { return nil }
	nested := ddd.NewRouter().HandleEvent
	cases := []struct {
		name     string
		handlers []ddd.DomainEventHandler
		check    func(error) bool
	}{
		{"failing and nested", []ddd.DomainEventHandler{failing, nested}, func(err error) bool { return errors.Is(err, boom) && !ddd.IsNoHandler(err) }},
		{"nested and failing", []ddd.DomainEventHandler{nested, failing}, func(err error) bool { return errors.Is(err, boom) && !ddd.IsNoHandler(err) }},
		{"handled and nested", []ddd.DomainEventHandler{ok, nested}, func(err error) bool { return err == nil }},
		{"nested only", []ddd.DomainEventHandler{nested, nested}, func(err error) bool { return ddd.IsNoHandler(err) }},
	}
	for _, c := range cases {
		r := ddd.NewRouter()
		for _, h := range c.handlers {
			if err := r.Handle(evt.Type, h); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.HandleEvent(context.Background(), evt); !c.check(err) {
			t.Errorf("%s: HandleEvent returned %v", c.name, err)
		}
	}
}
