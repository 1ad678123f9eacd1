package ddd_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dddbus/eventbus/ddd"
)

type line struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type invoice struct {
	InvoiceID string            `json:"invoice_id"`
	Amount    int               `json:"amount"`
	Note      string            `json:"note,omitempty"` // may be absent
	Due       *string           `json:"due"`            // present, null allowed
	Lines     []line            `json:"lines"`          // present, null allowed
	Extra     map[string]string `json:"extra,omitzero"` // may be absent
	Billing   address           `json:"billing"`        // present, an object
	Shipping  *address          `json:"shipping,omitempty"`
	Pair      [2]int            `json:"pair"`
	Raw       any               `json:"raw"`
}

type address struct {
	City string `json:"city"`
	Zip  string `json:"zip,omitempty"`
}

const fitting = `{"invoice_id":"i1","amount":5,"due":null,"lines":[{"sku":"a","qty":1}],` +
	`"billing":{"city":"Lyon"},"pair":[1,2],"raw":null}`

// Decode's rule: the payload must be something an invoice could have been
// encoded as, apart from extra fields.
func TestDecodeFits(t *testing.T) {
	ok := map[string]string{
		"exact":                         fitting,
		"omitempty fields given":        strings.Replace(fitting, `"amount":5`, `"amount":5,"note":"n","extra":{"k":"v"},"shipping":{"city":"Oslo"}`, 1),
		"extra fields ignored":          strings.Replace(fitting, `"amount":5`, `"amount":5,"new_field":[1]`, 1),
		"keys match case-insensitively": strings.Replace(fitting, `"invoice_id"`, `"INVOICE_ID"`, 1),
		"null slice":                    strings.Replace(fitting, `[{"sku":"a","qty":1}]`, `null`, 1),
		"empty slice":                   strings.Replace(fitting, `[{"sku":"a","qty":1}]`, `[]`, 1),
		"whitespace around":             " \n" + fitting + "\n ",
	}
	for name, payload := range ok {
		var v invoice
		if err := (&ddd.DomainEvent{ID: "e", Type: "t", Payload: []byte(payload)}).Decode(&v); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]string{
		"another event type":     `{"customer_id":"c1","name":"Ann"}`,
		"empty object":           `{}`,
		"null":                   `null`,
		"missing a field":        strings.Replace(fitting, `"amount":5,`, ``, 1),
		"missing a nested field": strings.Replace(fitting, `{"city":"Lyon"}`, `{"zip":"69000"}`, 1),
		"missing in an element":  strings.Replace(fitting, `{"sku":"a","qty":1}`, `{"sku":"a"}`, 1),
		"null for a string":      strings.Replace(fitting, `"i1"`, `null`, 1),
		"null for a number":      strings.Replace(fitting, `5`, `null`, 1),
		"null for a struct":      strings.Replace(fitting, `{"city":"Lyon"}`, `null`, 1),
		"object for a string":    strings.Replace(fitting, `"i1"`, `{"id":"i1"}`, 1),
		"string for a number":    strings.Replace(fitting, `5`, `"5"`, 1),
		"array too short":        strings.Replace(fitting, `[1,2]`, `[1]`, 1),
		"array too long":         strings.Replace(fitting, `[1,2]`, `[1,2,3]`, 1),
		"an array":               `[` + fitting + `]`,
		"a string":               `"x"`,
		"trailing data":          fitting + ` {}`,
	}
	for name, payload := range bad {
		var v invoice
		err := (&ddd.DomainEvent{ID: "e", Type: "t", Payload: []byte(payload)}).Decode(&v)
		if !errors.Is(err, ddd.ErrPayloadMismatch) {
			t.Errorf("%s: err %v, want ErrPayloadMismatch", name, err)
		}
	}
	// Extra fields are an error only when asked.
	var v invoice
	extra := &ddd.DomainEvent{ID: "e", Type: "t", Payload: []byte(strings.Replace(fitting, `"amount":5`, `"amount":5,"x":1`, 1))}
	if err := extra.Decode(&v, ddd.DisallowUnknownFields()); !errors.Is(err, ddd.ErrPayloadMismatch) {
		t.Errorf("unknown field with DisallowUnknownFields: err %v", err)
	}
	// Non-struct types follow the same rule.
	var s string
	if err := (&ddd.DomainEvent{Payload: []byte(`null`)}).Decode(&s); !errors.Is(err, ddd.ErrPayloadMismatch) {
		t.Errorf("null into a string: err %v", err)
	}
	if err := (&ddd.DomainEvent{Payload: []byte(`"ok"`)}).Decode(&s); err != nil || s != "ok" {
		t.Errorf("string: %q, %v", s, err)
	}
	// The message says where.
	err := (&ddd.DomainEvent{ID: "e", Type: "t", Payload: []byte(strings.Replace(fitting, `{"city":"Lyon"}`, `{}`, 1))}).Decode(&v)
	if err == nil || !strings.Contains(err.Error(), "missing field $.billing.city") {
		t.Errorf("message: %v", err)
	}
}

func BenchmarkDecode(b *testing.B) {
	evt := &ddd.DomainEvent{ID: "e", Type: "t", Payload: []byte(fitting)}
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			var v invoice
			if err := evt.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var v invoice
			if err := json.Unmarshal(evt.Payload, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
