package main

import (
	"context"
	"strconv"
	"time"
)

func init() {
	commands = append(commands, command{path: "status",
		summary: "every service's offset, head, lag, owner, retries and dead letters; transactions waiting for a resolution",
		run:     status})
}

// serviceRow is one service in "status".
type serviceRow struct {
	Name        string    `json:"name"`
	Offset      int64     `json:"offset"`
	Head        int64     `json:"head"`
	LagEvents   int64     `json:"lag_events"`
	LagSeconds  float64   `json:"lag_seconds"`
	Oldest      time.Time `json:"oldest_unconsumed_at,omitzero"`
	Owner       string    `json:"owner"`
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
	Retries     int64     `json:"retries"`
	DeadLetters int64     `json:"dead_letters"`
}

// txCountRow is one service's transactions in "status".
type txCountRow struct {
	Service    string `json:"service"`
	Pending    int64  `json:"pending"`
	Unresolved int64  `json:"unresolved"`
}

func status(ctx context.Context, c *cli, _ *opts, args []string) error {
	if len(args) > 0 {
		return usageErr("status takes no arguments")
	}
	bus, err := c.anyBus(ctx)
	if err != nil {
		return err
	}
	services, err := bus.Services(ctx)
	if err != nil {
		return err
	}
	lags, err := bus.Lags(ctx)
	if err != nil {
		return err
	}
	counts, err := bus.TransactionCounts(ctx)
	if err != nil {
		return err
	}
	age := map[string]int{}
	for i, l := range lags {
		age[l.Name] = i
	}
	out := struct {
		Services     []serviceRow `json:"services"`
		Transactions []txCountRow `json:"transactions"`
	}{Services: []serviceRow{}, Transactions: []txCountRow{}}
	for _, s := range services {
		r := serviceRow{Name: s.Name, Offset: s.ConsumedSeq, Head: s.HeadSeq, LagEvents: s.Pending, Owner: s.Owner,
			Retries: s.Retrying, DeadLetters: s.DeadLetters}
		if s.Owner != "" {
			r.LeaseUntil = s.LeaseUntil
		}
		if i, ok := age[s.Name]; ok {
			r.LagSeconds, r.Oldest = lags[i].Age.Seconds(), lags[i].Oldest
		}
		out.Services = append(out.Services, r)
	}
	for _, t := range counts {
		out.Transactions = append(out.Transactions, txCountRow(t))
	}
	if c.json {
		return c.printJSON(out)
	}
	var rows [][]string
	for _, r := range out.Services {
		rows = append(rows, []string{r.Name, i64(r.Offset), i64(r.Head), i64(r.LagEvents),
			fmtAge(time.Duration(r.LagSeconds * float64(time.Second))), orDash(r.Owner), fmtTime(r.LeaseUntil), i64(r.Retries), i64(r.DeadLetters)})
	}
	if len(rows) == 0 {
		c.say("no services registered")
	} else if err := c.table([]string{"SERVICE", "OFFSET", "HEAD", "LAG", "LAG_AGE", "OWNER", "LEASE_UNTIL", "RETRIES", "DEAD"}, rows); err != nil {
		return err
	}
	c.say("")
	if len(out.Transactions) == 0 {
		c.say("no transactions waiting for a resolution")
		return nil
	}
	rows = rows[:0]
	for _, t := range out.Transactions {
		rows = append(rows, []string{t.Service, i64(t.Pending), i64(t.Unresolved)})
	}
	return c.table([]string{"TX_SERVICE", "PENDING", "UNRESOLVED"}, rows)
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }
