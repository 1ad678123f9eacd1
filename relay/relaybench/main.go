// Command relaybench measures the relay side by side with the database
// consumer, in one run, on the same backlog size:
//
//   - drain: a backlog of -n events of -senders senders, committed and
//     sequenced before either starts; the no-op database consumer's rate
//     (events/s until its handler saw the last one) and the relay's (until
//     JetStream acknowledged the last one), alternating which goes first
//     round by round;
//
//   - latency: -latency events committed one per transaction at -rate/s,
//     from the commit's return to the handler of a relay.Subscriber, and to
//     the handler of a database consumer in the same process.
//
//     cd relay && go run ./relaybench -db sqlite -n 20000
//
// Figures on a shared machine are noisy: compare the columns of one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type config struct {
	db, dsn, natsURL string
	n, senders       int
	rounds           int
	latencyN, rate   int
	relayConcurrency int
	relayBatch       int
	js               jetstream.JetStream
	quiet            *slog.Logger
}

func main() {
	var c config
	flag.StringVar(&c.db, "db", "sqlite", "database: sqlite, mysql or postgres")
	flag.StringVar(&c.dsn, "dsn", "", "server DSN for mysql/postgres (default $EVENTBUS_MYSQL_DSN / $EVENTBUS_POSTGRES_DSN)")
	flag.StringVar(&c.natsURL, "nats", envOr("EVENTBUS_NATS_URL", nats.DefaultURL), "NATS server URL")
	flag.IntVar(&c.n, "n", 20000, "backlog size")
	flag.IntVar(&c.senders, "senders", 1000, "senders of the backlog")
	flag.IntVar(&c.rounds, "rounds", 3, "drain rounds")
	flag.IntVar(&c.latencyN, "latency-events", 2000, "events of the latency run")
	flag.IntVar(&c.rate, "rate", 500, "commits per second of the latency run")
	flag.IntVar(&c.relayConcurrency, "relay-concurrency", 0, "relay's ConsumeConcurrent (0: the relay's default)")
	flag.IntVar(&c.relayBatch, "relay-batch", 0, "relay's LimitPerRun (0: the relay's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relaybench:", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "relaybench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if c.dsn == "" {
		c.dsn = map[string]string{"mysql": os.Getenv("EVENTBUS_MYSQL_DSN"), "postgres": os.Getenv("EVENTBUS_POSTGRES_DSN")}[c.db]
	}
	c.quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(c *config) error {
	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	if c.js, err = jetstream.New(nc); err != nil {
		return err
	}
	ctx := context.Background()
	fmt.Printf("relaybench: db %s, backlog %d events of %d senders, %d rounds; latency %d events at %d/s; nats %s (server %s)\n",
		c.db, c.n, c.senders, c.rounds, c.latencyN, c.rate, c.natsURL, nc.ConnectedServerVersion())
	concurrency := c.relayConcurrency
	if concurrency == 0 {
		concurrency = relay.DefaultRelayConcurrency
	}
	var dbRates, relayRates, ratios, waitRates, pipeRates, waitRatios, pipeRatios []float64
	for round := range c.rounds {
		relayFirst := round%2 == 1
		dbRate, relayRate, err := drainRound(ctx, c, relayFirst)
		if err != nil {
			return fmt.Errorf("round %d: %w", round+1, err)
		}
		waiting, pipelined, err := rawRates(ctx, c, concurrency)
		if err != nil {
			return fmt.Errorf("round %d: raw JetStream: %w", round+1, err)
		}
		fmt.Printf("round %d: db no-op drain %.0f events/s, relay %.0f events/s (%.2fx)%s; raw JetStream %.0f msgs/s waiting on %d goroutines, %.0f pipelined\n",
			round+1, dbRate, relayRate, relayRate/dbRate, map[bool]string{true: " (relay first)", false: ""}[relayFirst],
			waiting, concurrency, pipelined)
		dbRates, relayRates, ratios = append(dbRates, dbRate), append(relayRates, relayRate), append(ratios, relayRate/dbRate)
		waitRates, pipeRates = append(waitRates, waiting), append(pipeRates, pipelined)
		waitRatios, pipeRatios = append(waitRatios, waiting/dbRate), append(pipeRatios, pipelined/dbRate)
	}
	relayLat, dbLat, err := latencyRound(ctx, c)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	fmt.Println()
	fmt.Println("| measure | database consumer | relay to JetStream | relay ÷ database |")
	fmt.Println("|---|---:|---:|---:|")
	fmt.Printf("| drain %d, no-op handler / publish until acked, median events/s | %.0f | %.0f | %.2fx |\n",
		c.n, median(dbRates), median(relayRates), median(ratios))
	fmt.Printf("| raw JetStream publish of as many messages, no database, %d goroutines each waiting for its ack, median msgs/s | | %.0f | %.2fx |\n",
		concurrency, median(waitRates), median(waitRatios))
	fmt.Printf("| raw JetStream publish, all pipelined (PublishMsgAsync), median msgs/s | | %.0f | %.2fx |\n",
		median(pipeRates), median(pipeRatios))
	fmt.Printf("| commit to handler p50 (subscriber for the relay), ms | %.2f | %.2f | |\n", ms(pct(dbLat, 50)), ms(pct(relayLat, 50)))
	fmt.Printf("| commit to handler p99, ms | %.2f | %.2f | |\n", ms(pct(dbLat, 99)), ms(pct(relayLat, 99)))
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// busOptions are the database consumer's and the relay's bus options:
// defaults, except no cleaner, the earliest start and a quiet logger.
func (c *config) busOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(c.quiet),
	}, extra...)
}
