package store

import "strconv"

// Slots is the number of slots senders hash to. A service of N partitions
// consumes slot s in partition s % N, so N is at most Slots.
const Slots = 1024

// Slot returns sender's slot: FNV-1a (32 bits) of its bytes, modulo Slots.
// It is part of the stored format (retry rows keep it, and the partition
// of every event follows from it): never change it.
func Slot(sender string) int {
	h := uint32(2166136261)
	for i := 0; i < len(sender); i++ {
		h ^= uint32(sender[i])
		h *= 16777619
	}
	return int(h % Slots)
}

// PartitionOf is the partition of sender in a service of n partitions.
func PartitionOf(sender string, n int) int {
	if n <= 1 {
		return 0
	}
	return Slot(sender) % n
}

// PartitionRow is the name of the row holding partition p of service's n
// partitions ("orders#2/4"); with n <= 1 the service's own row.
func PartitionRow(service string, p, n int) string {
	if n <= 1 {
		return service
	}
	return service + "#" + strconv.Itoa(p) + "/" + strconv.Itoa(n)
}

// MemberParams report a running instance of Service, for LeaseMillis.
type MemberParams struct {
	Service     string
	Instance    string
	LeaseMillis int64
	Standby     bool // also raise the service's standby presence (see ReportStandby)
}

// PartitionView is what an instance needs to share a service's partitions:
// the count in force, a requested change, the live instances (in name
// order), every consumption row, and the database clock.
type PartitionView struct {
	Exists     bool  // the service's row exists
	Partitions int   // count in force
	SwitchTo   int   // requested count (0: none)
	SwitchSeq  int64 // the sequence number every partition drains to first
	Members    []string
	Rows       []PartitionState // by partition; with Partitions 1, the service's own row
	Now        int64
}

// PartitionState is one consumption row.
type PartitionState struct {
	Name       string
	Part       int
	Offset     int64
	Owner      string
	LeaseUntil int64
}

// SwitchParams change Service's partition count From to To, all of From's
// rows being at offset At, none leased.
type SwitchParams struct {
	Service string
	From    int
	To      int
	At      int64
}
