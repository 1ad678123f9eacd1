package store

import (
	"hash/fnv"
	"testing"
)

// The slot of a sender is part of the stored format: these values must
// never change.
func TestSlotIsStable(t *testing.T) {
	for _, c := range []struct {
		sender string
		slot   int
	}{{"", 453}, {"s0", 822}, {"s1", 201}, {"acct-001", 884}, {"customer-0042", 318}, {"order-7f3a", 679}} {
		if got := Slot(c.sender); got != c.slot {
			t.Errorf("Slot(%q) = %d, want %d", c.sender, got, c.slot)
		}
		h := fnv.New32a()
		h.Write([]byte(c.sender))
		if got := int(h.Sum32() % Slots); got != c.slot {
			t.Errorf("FNV-1a of %q mod %d = %d, want %d", c.sender, Slots, got, c.slot)
		}
	}
	if PartitionOf("s0", 1) != 0 || PartitionOf("s0", 2) != 0 || PartitionOf("s1", 2) != 1 || PartitionOf("s1", 4) != 1 {
		t.Error("PartitionOf is not the slot modulo the count")
	}
	if PartitionRow("orders", 2, 4) != "orders#2/4" || PartitionRow("orders", 0, 1) != "orders" {
		t.Error("PartitionRow names")
	}
}
