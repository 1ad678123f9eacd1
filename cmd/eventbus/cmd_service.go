package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dddbus/eventbus"
)

func init() {
	commands = append(commands,
		command{path: "service seek", summary: "move a service's offset (keeps its dead letters; fences a running owner; asks first)", flags: seekFlags, run: serviceSeek},
		command{path: "service remove", summary: "delete a stopped service: offset, retries, dead letters (asks first)", flags: serviceFlag, run: serviceRemove},
	)
}

func seekFlags(fs *flag.FlagSet, o *opts) {
	serviceFlag(fs, o)
	fs.StringVar(&o.to, "to", "", "earliest, latest, a sequence number (the next event delivered is the one after it), "+
		"an RFC 3339 time, or a duration ago such as 2h (the events stored since)")
}

// seekPosition parses --to.
func seekPosition(to string, now time.Time) (eventbus.SeekPosition, error) {
	switch to {
	case "":
		return eventbus.SeekPosition{}, usageErr("--to is required: earliest, latest, SEQ, an RFC 3339 time or a duration ago")
	case "earliest":
		return eventbus.SeekEarliest, nil
	case "latest":
		return eventbus.SeekLatest, nil
	}
	if seq, err := strconv.ParseInt(to, 10, 64); err == nil {
		if seq < 0 {
			return eventbus.SeekPosition{}, usageErr("--to %d: a sequence number is >= 0", seq)
		}
		return eventbus.SeekAfter(seq), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, to); err == nil {
		return eventbus.SeekToTime(t), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(to, "-")); err == nil && d > 0 {
		return eventbus.SeekToTime(now.Add(-d)), nil
	}
	return eventbus.SeekPosition{}, usageErr("--to %q: want earliest, latest, a sequence number, an RFC 3339 time or a duration", to)
}

func serviceSeek(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) > 0 {
		return usageErr("service seek takes no arguments")
	}
	pos, err := seekPosition(o.to, time.Now())
	if err != nil {
		return err
	}
	bus, err := c.anyBus(ctx)
	if err != nil {
		return err
	}
	if err := c.confirm(fmt.Sprintf("seek %s to %s", o.service, pos)); err != nil {
		return err
	}
	res, err := bus.SeekService(ctx, o.service, pos)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			Service        string `json:"service"`
			From           int64  `json:"from"`
			To             int64  `json:"to"`
			RetriesDropped int64  `json:"retries_dropped"`
		}{res.Service, res.From, res.To, res.RetriesDropped})
	}
	c.say("%s: offset %d -> %d (%s); %d retries after the new offset dropped; dead letters kept", res.Service, res.From, res.To, pos, res.RetriesDropped)
	return nil
}

func serviceRemove(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) > 0 {
		return usageErr("service remove takes no arguments")
	}
	bus, err := c.anyBus(ctx)
	if err != nil {
		return err
	}
	services, err := bus.Services(ctx)
	if err != nil {
		return err
	}
	var found *eventbus.ServiceStatus
	for i := range services {
		if services[i].Name == o.service {
			found = &services[i]
		}
	}
	if found == nil {
		return notFound("no service %s", o.service)
	}
	if err := c.confirm(fmt.Sprintf("remove service %s with its offset, %d retries and %d dead letters", o.service, found.Retrying, found.DeadLetters)); err != nil {
		return err
	}
	if err := bus.RemoveService(ctx, o.service); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(struct {
			Service string `json:"service"`
			Removed bool   `json:"removed"`
		}{o.service, true})
	}
	c.say("service %s removed", o.service)
	return nil
}
