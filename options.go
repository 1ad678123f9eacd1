package eventbus

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/dddbus/eventbus/internal/store"
	"github.com/robfig/cron/v3"
)

// StartPosition says where a service that has no stored offset begins: it
// applies when the service registers (see RegisterEventHandler), and an
// existing service keeps its offset.
type StartPosition struct {
	kind startKind
	seq  int64 // startAfter's log position
}

// startKind is where a StartPosition begins. The zero value is the default
// (latest), so that StartPosition{} means StartFromLatest.
type startKind int8

const (
	startLatest   startKind = 0 // StartFromLatest
	startEarliest startKind = 1 // StartFromEarliest
	startAfter    startKind = 2 // StartAt(seq)
)

var (
	// StartFromLatest (the default) delivers exactly the events committed
	// after the service registers, including those of a transaction that
	// began before and committed after, and none committed before, whether
	// or not they were sequenced yet: the registration sequences them under
	// the sequencer's lock and starts after the last number.
	StartFromLatest = StartPosition{kind: startLatest}
	// StartFromEarliest delivers every event still retained in the log.
	StartFromEarliest = StartPosition{kind: startEarliest}
)

// StartAt begins after log position seq (the Seq of a delivered event): it
// delivers every event sequenced above seq, including events committed
// before the registration but sequenced after it.
func StartAt(seq int64) StartPosition { return StartPosition{kind: startAfter, seq: seq} }

// Config configures an EventBus. Every field has a default (see
// DefaultConfig); set them through the With... functions.
type Config struct {
	// RunInterval is how often the poller looks for new events when it is
	// not woken by a local commit. Default 200ms.
	RunInterval time.Duration
	// LimitPerRun is the most events read and handled per batch. Default 500.
	LimitPerRun int
	// ConsumeConcurrent is the number of handler goroutines. Events of
	// different senders run concurrently; one sender's events never do. Default 16.
	ConsumeConcurrent int
	// RetryStrategy decides retries of failed events. Default DefaultRetryStrategy().
	RetryStrategy IRetryStrategy
	// HandlerTimeout bounds one handler call. Its context is cancelled after
	// HandlerTimeout; a call that ignores that and is still running a grace
	// later (half of HandlerTimeout, at least 100ms and at most 5s) is
	// abandoned: the bus stops waiting for it, its event counts as a failed
	// attempt (retried or made a dead letter by RetryStrategy), its worker
	// goes on with other senders, and its late result is ignored. Until the
	// call returns, its sender gets no other event: the sender's later
	// events wait in the retry store. Stats counts abandoned calls.
	//
	// 0 disables the limit: calls are never cancelled nor abandoned. A call
	// still running a minute after it started is set aside instead: its
	// event waits in the retry store, the rest of its batch goes on, its
	// sender gets nothing else until it returns, and its result is recorded
	// when it does. Default 1m.
	HandlerTimeout time.Duration
	// ShutdownGrace is how long Start waits, once its context is cancelled,
	// for handler calls still running. Then it cancels their contexts, leaves
	// their events to the next owner (they stay ahead of the offset, or in
	// the retry store), releases the lease and returns; a call that ignores
	// its context may go on running after Start returned. No handler call
	// starts after the context is cancelled. 0 waits for none. Default 15s:
	// keep it below the time your process manager allows between its stop
	// signal and a kill (30s on Kubernetes), so that the lease is released.
	ShutdownGrace time.Duration
	// CleanCron is when the cleaner runs: a standard 5-field cron spec
	// (minute hour day-of-month month day-of-week; no seconds field) or a
	// descriptor such as "@daily" or "@every 1h". Empty disables the cron job.
	// Default "@daily".
	CleanCron string
	// RetentionTime is how long consumed events stay in the log. Default 7 days.
	RetentionTime time.Duration
	// DeadLetterRetention, when positive, lets the cleaner delete dead
	// letters older than it. Default 0: dead letters are kept until discarded.
	DeadLetterRetention time.Duration
	// TxCheckTimeout is how long a transactional message may stay pending
	// before the Tx checker is asked about it. Default 1m.
	TxCheckTimeout time.Duration
	// TxCheckMaxChecks is how many TxUnknown answers (or checker errors) a
	// pending transaction gets before it is marked unresolved. Default 10.
	TxCheckMaxChecks int
	// TxCheckCallTimeout bounds one call of the Tx checker: its context is
	// cancelled then, and an answer that comes later counts as unknown (the
	// call is abandoned; the bus, and Start's return, never wait for it).
	// While a call runs, the transaction is claimed for TxCheckCallTimeout
	// plus max(TxCheckCallTimeout, 30s), so no other instance asks about it;
	// an answer is applied only while that claim holds. Default 30s; at most 1h.
	TxCheckCallTimeout time.Duration
	// LeaseDuration is how long an instance owns its service's consumption
	// (or a partition's) without renewing it. Another instance takes over
	// after it lapses: it bounds the time from an instance's death (a
	// SIGKILL, a lost host) to delivery resuming elsewhere, which is at
	// most LeaseDuration plus RunInterval. The owner renews it every third
	// of it (one UPDATE per second and held partition at the default).
	// Default 3s (15s before partitions existed).
	LeaseDuration time.Duration
	// Partitions splits the service's events into this many partitions by
	// sender (see partition.go): each partition has its own offset, lease,
	// retries and parked FIFO events, and the running instances of the
	// service share the partitions evenly. One sender's events always fall
	// in one partition, so per-sender order holds. Default 1: one instance
	// consumes the service at a time, the others stand by (as before
	// partitions existed). At most 1024. Changing it on a service that has
	// stored offsets is safe: the instances drain every partition to the
	// same sequence number, then switch (see partition.go).
	Partitions int
	// InstanceID names this instance in leases (say, a pod name); it must
	// be unique among the running instances of a service. A process
	// restarted with the same ID takes its partitions (or the service's
	// lease) back at once instead of waiting for the old lease to lapse.
	// Default: host name, process id and a random suffix. Same characters
	// as a service name, at most 64 bytes.
	InstanceID string
	// ListenNotify, on PostgreSQL, wakes the buses of other processes at
	// once when events commit: Dispatch issues a NOTIFY in the writing
	// transaction (at most one per bus per 5ms; a transaction that skips
	// it is covered by one that Notify sends after its commit), and each
	// process with a started bus listens on one dedicated connection per
	// database (opened from the gorm dialector's DSN, application_name
	// "eventbus listener ...", reconnecting with backoff). Without a DSN
	// (gorm opened from an existing connection) the change probe is used
	// instead. Polling stays the fallback. Ignored elsewhere. The first
	// bus started on a database sets how its process listens. Default true.
	ListenNotify bool
	// ChangeProbeInterval is how often a process with a started bus reads
	// the change probe of a database where it does not listen (MySQL,
	// SQLite; PostgreSQL without ListenNotify or a DSN): one index-only
	// read of the highest event id and the last number given, waking every
	// bus of the process on the database when either changed. Events of
	// other processes are then handled about half of it after they commit,
	// rather than half of RunInterval. 0 disables it. The first bus
	// started on a database sets it for its process. Default 50ms.
	ChangeProbeInterval time.Duration
	// StartPosition applies to a service seen for the first time. Default StartFromLatest.
	StartPosition StartPosition
	// MaxPayloadBytes caps an event's payload. Default 1 MiB; at most 64 MiB.
	MaxPayloadBytes int
	// TablePrefix is prepended to every table name. Lowercase letters,
	// digits and underscores, starting with a letter, at most 24 bytes. Default "ddd_".
	TablePrefix string
	// AutoMigrate runs the embedded migrations in NewEventBus. Default true.
	AutoMigrate bool
	// Logger receives the bus's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer is told what the bus does (see Observer; set with
	// WithObserver). Default nil: none.
	Observer Observer

	// Deprecated: use TxCheckTimeout. Set to another value than the
	// default while TxCheckTimeout keeps it, it takes effect.
	TXCheckTimeout time.Duration
	// Deprecated: use TxCheckMaxChecks (same rule as TXCheckTimeout).
	TXCheckMaxChecks int
	// Deprecated: use TxCheckCallTimeout (same rule as TXCheckTimeout).
	TXCheckCallTimeout time.Duration
}

// Options is the former name of Config.
//
// Deprecated: use Config. (Options() on EventBus returns engine options.)
type Options = Config

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		RunInterval:         200 * time.Millisecond,
		LimitPerRun:         500,
		ConsumeConcurrent:   16,
		RetryStrategy:       DefaultRetryStrategy(),
		HandlerTimeout:      time.Minute,
		ShutdownGrace:       15 * time.Second,
		CleanCron:           "@daily",
		RetentionTime:       7 * 24 * time.Hour,
		TxCheckTimeout:      time.Minute,
		TxCheckMaxChecks:    10,
		TxCheckCallTimeout:  30 * time.Second,
		LeaseDuration:       3 * time.Second,
		ListenNotify:        true,
		ChangeProbeInterval: 50 * time.Millisecond,
		StartPosition:       StartFromLatest,
		Partitions:          1,
		MaxPayloadBytes:     1 << 20,
		TablePrefix:         "ddd_",
		AutoMigrate:         true,
		Logger:              slog.Default(),
		TXCheckTimeout:      time.Minute,
		TXCheckMaxChecks:    10,
		TXCheckCallTimeout:  30 * time.Second,
	}
}

// DefaultOptions returns DefaultConfig().
//
// Deprecated: use DefaultConfig.
func DefaultOptions() Options { return DefaultConfig() }

// settle makes each deprecated field and its successor agree once the
// options are applied: the one an option moved from the default wins (the
// new one if both moved), so code written against either name works.
func (o *Config) settle() {
	def := DefaultConfig()
	if o.TxCheckTimeout == def.TxCheckTimeout {
		o.TxCheckTimeout = o.TXCheckTimeout
	}
	if o.TxCheckMaxChecks == def.TxCheckMaxChecks {
		o.TxCheckMaxChecks = o.TXCheckMaxChecks
	}
	if o.TxCheckCallTimeout == def.TxCheckCallTimeout {
		o.TxCheckCallTimeout = o.TXCheckCallTimeout
	}
	o.TXCheckTimeout, o.TXCheckMaxChecks, o.TXCheckCallTimeout = o.TxCheckTimeout, o.TxCheckMaxChecks, o.TxCheckCallTimeout
}

// Option changes one setting.
type Option func(*Config)

// WithPartitions sets Config.Partitions.
func WithPartitions(n int) Option { return func(o *Config) { o.Partitions = n } }

// WithInstanceID sets Config.InstanceID.
func WithInstanceID(id string) Option { return func(o *Config) { o.InstanceID = id } }

// WithRunInterval sets Config.RunInterval.
func WithRunInterval(d time.Duration) Option { return func(o *Config) { o.RunInterval = d } }

// WithLimitPerRun sets Config.LimitPerRun.
func WithLimitPerRun(n int) Option { return func(o *Config) { o.LimitPerRun = n } }

// WithConsumeConcurrent sets Config.ConsumeConcurrent.
func WithConsumeConcurrent(n int) Option { return func(o *Config) { o.ConsumeConcurrent = n } }

// WithRetryStrategy sets Config.RetryStrategy.
func WithRetryStrategy(s IRetryStrategy) Option { return func(o *Config) { o.RetryStrategy = s } }

// WithHandlerTimeout sets Config.HandlerTimeout.
func WithHandlerTimeout(d time.Duration) Option { return func(o *Config) { o.HandlerTimeout = d } }

// WithShutdownGrace sets Config.ShutdownGrace.
func WithShutdownGrace(d time.Duration) Option { return func(o *Config) { o.ShutdownGrace = d } }

// WithCleanCron sets Config.CleanCron.
func WithCleanCron(spec string) Option { return func(o *Config) { o.CleanCron = spec } }

// WithRetentionTime sets Config.RetentionTime.
func WithRetentionTime(d time.Duration) Option { return func(o *Config) { o.RetentionTime = d } }

// WithDeadLetterRetention sets Config.DeadLetterRetention.
func WithDeadLetterRetention(d time.Duration) Option {
	return func(o *Config) { o.DeadLetterRetention = d }
}

// WithTxCheckTimeout sets Config.TxCheckTimeout.
func WithTxCheckTimeout(d time.Duration) Option { return func(o *Config) { o.TxCheckTimeout = d } }

// WithTxCheckMaxChecks sets Config.TxCheckMaxChecks.
func WithTxCheckMaxChecks(n int) Option { return func(o *Config) { o.TxCheckMaxChecks = n } }

// WithTxCheckCallTimeout sets Config.TxCheckCallTimeout.
func WithTxCheckCallTimeout(d time.Duration) Option {
	return func(o *Config) { o.TxCheckCallTimeout = d }
}

// Deprecated: use WithTxCheckTimeout.
func WithTXCheckTimeout(d time.Duration) Option { return WithTxCheckTimeout(d) }

// Deprecated: use WithTxCheckMaxChecks.
func WithTXCheckMaxChecks(n int) Option { return WithTxCheckMaxChecks(n) }

// Deprecated: use WithTxCheckCallTimeout.
func WithTXCheckCallTimeout(d time.Duration) Option { return WithTxCheckCallTimeout(d) }

// WithLeaseDuration sets Config.LeaseDuration.
func WithLeaseDuration(d time.Duration) Option { return func(o *Config) { o.LeaseDuration = d } }

// WithListenNotify sets Config.ListenNotify.
func WithListenNotify(on bool) Option { return func(o *Config) { o.ListenNotify = on } }

// WithChangeProbeInterval sets Config.ChangeProbeInterval (0 disables the probe).
func WithChangeProbeInterval(d time.Duration) Option {
	return func(o *Config) { o.ChangeProbeInterval = d }
}

// WithStartPosition sets Config.StartPosition.
func WithStartPosition(p StartPosition) Option { return func(o *Config) { o.StartPosition = p } }

// WithMaxPayloadBytes sets Config.MaxPayloadBytes.
func WithMaxPayloadBytes(n int) Option { return func(o *Config) { o.MaxPayloadBytes = n } }

// WithTablePrefix sets Config.TablePrefix.
func WithTablePrefix(p string) Option { return func(o *Config) { o.TablePrefix = p } }

// WithAutoMigrate sets Config.AutoMigrate.
func WithAutoMigrate(on bool) Option { return func(o *Config) { o.AutoMigrate = on } }

// WithLogger sets Config.Logger.
func WithLogger(l *slog.Logger) Option { return func(o *Config) { o.Logger = l } }

const maxPayloadLimit = 64 << 20

var (
	tablePrefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,23}$`)
	serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

// cronParser accepts 5-field specs and descriptors; it is robfig/cron's default.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (o *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
	switch {
	case o.RunInterval <= 0:
		return bad("RunInterval must be positive, got %s", o.RunInterval)
	case o.LimitPerRun < 1 || o.LimitPerRun > 10000:
		return bad("LimitPerRun must be 1..10000, got %d", o.LimitPerRun)
	case o.ConsumeConcurrent < 1 || o.ConsumeConcurrent > 4096:
		return bad("ConsumeConcurrent must be 1..4096, got %d", o.ConsumeConcurrent)
	case o.HandlerTimeout < 0:
		return bad("HandlerTimeout must be >= 0, got %s", o.HandlerTimeout)
	case o.ShutdownGrace < 0:
		return bad("ShutdownGrace must be >= 0, got %s", o.ShutdownGrace)
	case o.RetentionTime < 0:
		return bad("RetentionTime must be >= 0, got %s", o.RetentionTime)
	case o.DeadLetterRetention < 0:
		return bad("DeadLetterRetention must be >= 0, got %s", o.DeadLetterRetention)
	case o.TxCheckTimeout <= 0:
		return bad("TxCheckTimeout must be positive, got %s", o.TxCheckTimeout)
	case o.TxCheckMaxChecks < 1:
		return bad("TxCheckMaxChecks must be >= 1, got %d", o.TxCheckMaxChecks)
	case o.TxCheckCallTimeout <= 0 || o.TxCheckCallTimeout > time.Hour:
		return bad("TxCheckCallTimeout must be in (0, 1h], got %s", o.TxCheckCallTimeout)
	case o.LeaseDuration < 100*time.Millisecond:
		return bad("LeaseDuration must be at least 100ms, got %s", o.LeaseDuration)
	case o.Partitions < 1 || o.Partitions > store.Slots:
		return bad("Partitions must be 1..%d, got %d", store.Slots, o.Partitions)
	case o.InstanceID != "" && !serviceNameRE.MatchString(o.InstanceID):
		return bad("InstanceID %q must match %s", o.InstanceID, serviceNameRE)
	case o.ChangeProbeInterval != 0 && o.ChangeProbeInterval < time.Millisecond:
		return bad("ChangeProbeInterval must be 0 (off) or at least 1ms, got %s", o.ChangeProbeInterval)
	case o.StartPosition.kind == startAfter && o.StartPosition.seq < 0:
		return bad("StartAt position must be >= 0, got %d", o.StartPosition.seq)
	case o.MaxPayloadBytes < 1 || o.MaxPayloadBytes > maxPayloadLimit:
		return bad("MaxPayloadBytes must be 1..%d, got %d", maxPayloadLimit, o.MaxPayloadBytes)
	case !tablePrefixRE.MatchString(o.TablePrefix):
		return bad("TablePrefix %q must match %s", o.TablePrefix, tablePrefixRE)
	case o.Logger == nil:
		return bad("nil Logger")
	}
	if o.CleanCron != "" {
		if _, err := cronParser.Parse(o.CleanCron); err != nil {
			return bad("CleanCron %q: %v", o.CleanCron, err)
		}
	}
	return validateRetryStrategy(o.RetryStrategy)
}

func validateServiceName(name string) error {
	if !serviceNameRE.MatchString(name) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalidServiceName, name, serviceNameRE)
	}
	return nil
}
