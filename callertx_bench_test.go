package eventbus_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// BenchmarkDispatchCallerTx is BenchmarkDispatch (one event per business
// transaction, 8 producers) with the transaction from the bus's own pool
// (taken as it is) and from a second pool of the same DSN (identified by a
// query on its connection first), through GORM and database/sql:
//
//	go test -run '^$' -bench DispatchCallerTx -benchtime 2000x
func BenchmarkDispatchCallerTx(b *testing.B) {
	for _, target := range dbtest.Targets {
		for _, c := range []struct {
			name          string
			second, plain bool
		}{{"own-pool/gorm", false, false}, {"second-pool/gorm", true, false}, {"own-pool/sql", false, true}, {"second-pool/sql", true, true}} {
			b.Run(target.Name+"/"+c.name, func(b *testing.B) {
				bus, pool := callerTxBench(b, target, c.second)
				if err := pool.AutoMigrate(&benchOrder{}); err != nil {
					b.Fatal(err)
				}
				sqlPool, err := pool.DB()
				if err != nil {
					b.Fatal(err)
				}
				var seq atomic.Int64
				b.SetParallelism(4) // 2 cores x 4 = 8 producers
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := seq.Add(1)
						evt := benchEvent(b, fmt.Sprintf("order-%d", n%1000), n)
						var err error
						if c.plain {
							err = sqlTx(sqlPool, func(tx *sql.Tx) error {
								if _, err := tx.Exec("INSERT INTO bench_orders (amount) VALUES (1)"); err != nil {
									return err
								}
								return bus.Dispatch(ddd.ContextWithSQLTx(context.Background(), tx), evt)
							})
						} else {
							err = pool.Transaction(func(tx *gorm.DB) error {
								if err := tx.Create(&benchOrder{Amount: 1}).Error; err != nil {
									return err
								}
								return bus.Dispatch(ddd.ContextWithTx(context.Background(), tx), evt)
							})
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			})
		}
	}
}

// callerTxBench returns a producing bus on a new database of target, and
// the pool to begin transactions on: the bus's own, or a second one.
func callerTxBench(b *testing.B, target dbtest.Target, second bool) (*eventbus.EventBus, *gorm.DB) {
	tdb := target.New(b)
	db := tdb.Open(b)
	bus, err := eventbus.NewEventBus("producer", db, quietOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	if second {
		return bus, tdb.Open(b)
	}
	return bus, db
}

func sqlTx(db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// BenchmarkCallerTxCheck is what recognising a caller's transaction costs
// each Dispatch: nothing for one from the bus's own pool, one query on the
// transaction's connection for one from a second pool; "select-1" is a bare
// round trip on such a transaction, for scale.
func BenchmarkCallerTxCheck(b *testing.B) {
	for _, target := range dbtest.Targets {
		for _, name := range []string{"own-pool", "second-pool", "select-1"} {
			second := name != "own-pool"
			b.Run(target.Name+"/"+name, func(b *testing.B) {
				bus, pool := callerTxBench(b, target, second)
				tx := pool.Begin()
				if tx.Error != nil {
					b.Fatal(tx.Error)
				}
				defer tx.Rollback()
				ctx := ddd.ContextWithTx(context.Background(), tx)
				b.ResetTimer()
				for range b.N {
					if name == "select-1" {
						var one int
						if err := tx.Raw("SELECT 1").Row().Scan(&one); err != nil {
							b.Fatal(err)
						}
					} else if err := eventbus.CheckCallerTx(ctx, bus); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
