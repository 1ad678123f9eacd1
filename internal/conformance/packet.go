package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
)

func init() {
	register("MySQLPacketLimitRespected", testPacketLimit)
}

// openInterpolated opens tdb's MySQL database with interpolateParams=true:
// statements travel whole, as text, so an INSERT is one packet.
func openInterpolated(t testing.TB, tdb *dbtest.Database) *gorm.DB {
	cfg, err := mysqldrv.ParseDSN(os.Getenv(dbtest.MySQLEnv))
	if err != nil {
		t.Fatal(err)
	}
	probe := tdb.Open(t)
	must(t, probe.Raw("SELECT DATABASE()").Scan(&cfg.DBName).Error)
	cfg.Addr = tdb.Addr
	cfg.InterpolateParams = true
	db, err := gorm.Open(mysql.Open(cfg.FormatDSN()), &gorm.Config{})
	must(t, err)
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

// MySQL refuses packets over max_allowed_packet: NewEventBus refuses a
// MaxPayloadBytes that cannot fit, an event too large with its metadata is
// ErrInvalidEvent before any SQL, and a Dispatch of more than a packet's
// worth of events is cut into statements that fit.
func testPacketLimit(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect != "mysql" {
		t.Skip("only MySQL/MariaDB limit packets below MaxPayloadBytes' 64 MiB")
	}
	ctx := context.Background()
	db := openInterpolated(t, tdb)
	var packet int
	must(t, db.Raw("SELECT @@max_allowed_packet").Scan(&packet).Error)
	if packet <= 64<<20 {
		_, err := eventbus.NewEventBus("big", db, fastOptions(eventbus.WithMaxPayloadBytes(packet))...)
		if !errors.Is(err, eventbus.ErrInvalidOption) || !strings.Contains(err.Error(), "max_allowed_packet") {
			t.Errorf("MaxPayloadBytes = max_allowed_packet (%d): err %v, want ErrInvalidOption naming max_allowed_packet", packet, err)
		}
	} else {
		t.Logf("max_allowed_packet %d is above MaxPayloadBytes' limit: nothing to refuse", packet)
	}
	bus := newBus(t, db, "packets")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)

	// Metadata can make an event larger than any packet.
	huge := mustEvent(t, "huge", 1, ddd.WithMetadata("blob", strings.Repeat("m", packet)))
	if err := bus.Dispatch(ctx, huge); !errors.Is(err, eventbus.ErrInvalidEvent) {
		t.Errorf("event over max_allowed_packet: err %v, want ErrInvalidEvent", err)
	}

	// More than a packet of events in one call, with payloads just under
	// MaxPayloadBytes' default (1 MiB) and characters the text protocol escapes.
	n := packet/(1<<20) + 3
	events := func(sender string) []*ddd.DomainEvent {
		out := make([]*ddd.DomainEvent, n)
		for i := range out {
			e := mustEvent(t, sender, i)
			e.Payload = []byte(fmt.Sprintf(`{"order_id":%q,"n":%d,"pad":"%s"}`, sender, i, strings.Repeat(`\"`, (1<<20-200)/2)))
			out[i] = e
		}
		return out
	}
	direct, half := events("direct"), events("half")
	if err := bus.Dispatch(ctx, direct...); err != nil {
		t.Fatalf("Dispatch of %d events of 1 MiB: %v", n, err)
	}
	tctx, err := bus.DispatchBegin(ctx, half...)
	if err != nil {
		t.Fatalf("DispatchBegin of %d events of 1 MiB: %v", n, err)
	}
	must(t, bus.Commit(tctx))
	waitFor(t, 60*time.Second, "every event", func() bool { return rec.distinct() >= 2*n })
	rec.checkExactlyOnce(t, append(eventIDs(direct), eventIDs(half)...))
}
