package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the value of the sample of metric whose labels contain label.
func scrape(t *testing.T, addr, metric, label string) (float64, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, metric+"{") && strings.Contains(line, label) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v, string(body)
		}
	}
	t.Fatalf("no %s{%s} in the scrape:\n%s", metric, label, body)
	return 0, ""
}

// TestPrometheusLagOfStoppedServiceGrows runs the example, scrapes its
// Prometheus endpoint and checks that the lag of shipping (registered,
// never started) is its 3 events and that their age grows between scrapes.
func TestPrometheusLagOfStoppedServiceGrows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg := config{listen: "127.0.0.1:0", orders: 3, serve: true, refresh: 20 * time.Millisecond, ready: func(addr string) { ready <- addr }}
	go func() { done <- run(ctx, cfg, io.Discard) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("example ended before serving: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("example did not serve within 60s")
	}
	shipping := `messaging_consumer_group_name="shipping"`
	if lag, body := scrape(t, addr, "eventbus_consumer_lag", shipping); lag != 3 {
		t.Fatalf("shipping lag %v events, want 3\n%s", lag, body)
	}
	if lag, _ := scrape(t, addr, "eventbus_consumer_lag", `messaging_consumer_group_name="billing"`); lag != 0 {
		t.Errorf("billing lag %v events, want 0", lag)
	}
	first, _ := scrape(t, addr, "eventbus_consumer_lag_age_seconds", shipping)
	deadline := time.Now().Add(10 * time.Second)
	for {
		age, body := scrape(t, addr, "eventbus_consumer_lag_age_seconds", shipping)
		if age > first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shipping's lag age stayed at %v for 10s\n%s", first, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := scrape(t, addr, "messaging_process_duration_seconds_count", `eventbus_outcome="retry"`); n != 1 {
		t.Errorf("retries counted %v, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSpansPrinted runs the example with -spans: every order's trace goes
// from the command through the producer span to billing's consumer spans.
func TestSpansPrinted(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), config{listen: "127.0.0.1:0", orders: 2, spans: true, refresh: time.Second}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"place order [internal]", "    send orders.OrderPlaced [producer]", "      process orders.OrderPlaced [consumer]",
		"        charge card [internal]", "eventbus.outcome=retry", "messaging.consumer.group.name=billing"} {
		if !strings.Contains(s, want) {
			t.Errorf("span listing lacks %q:\n%s", want, s)
		}
	}
	if got := strings.Count(s, "trace "); got != 2 {
		t.Errorf("%d traces listed, want one per order (2):\n%s", got, s)
	}
}
