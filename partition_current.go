// The partition being worked on, as the batch and the lease see it: which
// senders it owns, how far it may consume, its lease row, the other
// partitions' leases.

package eventbus

import (
	"math"

	"github.com/dddbus/eventbus/internal/store"
)

// owns reports whether sender's events belong to the partition being
// consumed (all do with one partition).
func (b *EventBus) owns(sender string) bool {
	p := b.cur
	return p == nil || p.count <= 1 || store.PartitionOf(sender, p.count) == p.index
}

// consumeCap is the last sequence number the current partition may
// consume: the switch point while a count change drains.
func (b *EventBus) consumeCap() int64 {
	if b.cur != nil && b.view.SwitchTo != 0 {
		return b.view.SwitchSeq
	}
	return math.MaxInt64
}

// curRow is the row of the lease being worked on.
func (b *EventBus) curRow() string {
	if b.cur != nil {
		return b.cur.row
	}
	return b.service
}

// otherLeases returns the leases this instance holds on partitions other
// than the one being worked on.
func (b *EventBus) otherLeases() []*lease {
	var out []*lease
	for _, p := range b.parts {
		if p != b.cur && p.lease != nil {
			out = append(out, p.lease)
		}
	}
	return out
}
