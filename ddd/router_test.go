package ddd_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dddbus/eventbus/ddd"
)

func TestRouter(t *testing.T) {
	r := ddd.NewRouter()
	var got []string
	if err := ddd.On(r, func(ctx context.Context, evt *ddd.DomainEvent, s Shipped) error {
		got = append(got, "billing:"+s.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := ddd.On(r, func(ctx context.Context, evt *ddd.DomainEvent, s Shipped) error {
		got = append(got, "shipping:"+s.ID)
		return boom
	}); err != nil {
		t.Fatal(err)
	}
	evt, _ := ddd.NewDomainEvent("o1", Shipped{ID: "o1"})
	if err := r.HandleEvent(context.Background(), evt); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if len(got) != 2 || got[0] != "billing:o1" || got[1] != "shipping:o1" {
		t.Fatalf("handlers ran %v", got)
	}
	other, _ := ddd.NewDomainEvent("o1", Named{})
	if err := r.HandleEvent(context.Background(), other); !errors.Is(err, ddd.ErrNoHandler) {
		t.Fatalf("unrouted event: err %v, want ErrNoHandler", err)
	}
	bad := *evt
	bad.Payload = []byte(`{"ID": 5}`)
	if err := r.HandleEvent(context.Background(), &bad); !ddd.IsPermanent(err) {
		t.Fatalf("undecodable payload: err %v, want a permanent error", err)
	}
	if err := ddd.On[Shipped](r, nil); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Fatalf("nil handler: err %v", err)
	}
	if err := r.Handle("", func(context.Context, *ddd.DomainEvent) error { return nil }); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Fatalf("empty type: err %v", err)
	}
}
