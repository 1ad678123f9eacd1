package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// orderPlaced is the event every scenario sends: about 200 bytes of JSON,
// encoded per event by all three contestants.
type orderPlaced struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Amount     int64  `json:"amount_cents"`
	Currency   string `json:"currency"`
	Items      []item `json:"items"`
	Channel    string `json:"channel"`
}

type item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// EventType names the event in the library's log.
func (orderPlaced) EventType() string { return "orders.OrderPlaced" }

const eventType = "orders.OrderPlaced"

// senderOf spreads events over senders (aggregates): customer i % senders.
func senderOf(i, senders int) string { return fmt.Sprintf("customer-%04d", i%senders) }

func newOrder(i int, sender string) orderPlaced {
	return orderPlaced{
		OrderID:    fmt.Sprintf("order-%010d", i),
		CustomerID: sender,
		Amount:     int64(1000 + i%9000),
		Currency:   "EUR",
		Items: []item{
			{SKU: "SKU-0001-RED-XL", Qty: 1 + i%3},
			{SKU: "SKU-0042-BLUE-M", Qty: 2},
			{SKU: "SKU-1337-GREEN-S", Qty: 1},
		},
		Channel: "web-checkout-eu-" + strings.Repeat("x", 8),
	}
}

// payloadOf encodes the event as the peer and the raw baseline store it.
func payloadOf(i int, sender string) []byte {
	b, err := json.Marshal(newOrder(i, sender))
	if err != nil {
		panic(err) // a fixed struct always encodes
	}
	return b
}
