// Package delivery owns subscriptions and the delivery log: which subscriber gets
// which event, every attempt made, and what became of it. Package
// delivery/worker does the delivering.
package delivery

import (
	"context"
	"crypto/ed25519"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/delivery/filter"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db"
)

//go:embed queries.sql
var queriesSQL string

var q struct {
	CreateSubscription  string `sql:"create_subscription"`
	UpdateSubscription  string `sql:"update_subscription"`
	RotateSecret        string `sql:"rotate_secret"`
	ListSubscriptions   string `sql:"list_subscriptions"`
	GetSubscription     string `sql:"get_subscription"`
	DeleteSubscription  string `sql:"delete_subscription"`
	ListDeliveries      string `sql:"list_deliveries"`
	GetDelivery         string `sql:"get_delivery"`
	RetryDelivery       string `sql:"retry_delivery"`
	ReplayExisting      string `sql:"replay_existing"`
	ReplayMissing       string `sql:"replay_missing"`
	ReplayCandidates    string `sql:"replay_candidates"`
	ReplayCreate        string `sql:"replay_create"`
	RedriveDead         string `sql:"redrive_dead"`
	SigningSecrets      string `sql:"signing_secrets"`
	EnsureSigningKey    string `sql:"ensure_signing_key"`
	ListAttempts        string `sql:"list_attempts"`
	EventDeliveryStates string `sql:"event_delivery_states"`
}

func init() { db.MustLoadQueries(queriesSQL, &q) }

// Errors of the delivery store.
var (
	// ErrNotFound means no such subscription or delivery.
	ErrNotFound = errors.New("not found")
	// ErrNotRetryable means a delivery is in flight or cancelled.
	ErrNotRetryable = errors.New("delivery cannot be retried now")
)

// Delivery statuses.
const (
	StatusPending   = "pending"   // not yet delivered; attempts may be under way or scheduled
	StatusSucceeded = "succeeded" // a 2xx answer was recorded
	StatusDead      = "dead"      // every attempt failed; the record went to the dead-letter topic
	StatusCancelled = "cancelled" // the subscription was deleted first
)

// ValidStatus reports whether s is a delivery status.
func ValidStatus(s string) bool {
	switch s {
	case StatusPending, StatusSucceeded, StatusDead, StatusCancelled:
		return true
	}
	return false
}

// RetryPolicy shapes a subscription's retries; absent fields keep the worker's
// defaults (ECS_WORKER_RETRY_SCHEDULE, ECS_WORKER_MAX_ATTEMPTS, no age limit).
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included. Without it, a
	// subscription with its own schedule gets one attempt per step plus the first.
	MaxAttempts   *int `json:"max_attempts,omitempty"`
	MaxAgeSeconds *int `json:"max_age_seconds,omitempty"`
	// ScheduleSeconds are the waits after each failed attempt; past its end the
	// last wait repeats. Each wait gets ±20% jitter.
	ScheduleSeconds []int `json:"schedule_seconds,omitempty"`
}

func (p *RetryPolicy) columns() (attempts, age *int, schedule []int32) {
	if p == nil {
		return nil, nil, nil
	}
	for _, s := range p.ScheduleSeconds {
		schedule = append(schedule, int32(s))
	}
	return p.MaxAttempts, p.MaxAgeSeconds, schedule
}

// Orderings of a subscription's deliveries.
const (
	// Unordered sends each delivery as soon as it can: the fastest, and a
	// failing delivery holds nothing back. First attempts still go out in key
	// order.
	Unordered = "unordered"
	// Ordered makes a delivery wait until the earlier deliveries of the same event
	// key to the same subscription have succeeded or died.
	Ordered = "ordered"
)

// Subscription states.
const (
	StateActive   = "active"   // deliveries are made
	StatePaused   = "paused"   // deliveries accumulate and are made on resume
	StateDisabled = "disabled" // no deliveries are created; DisabledReason says why
)

// Subscription is one webhook endpoint and the event types it wants.
type Subscription struct {
	ID  uuid.UUID `json:"id"`
	URL string    `json:"url"`
	// EventTypes are exact names, "prefix.*" (every type under prefix) or "*".
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	// Secret is only returned when the subscription is created or its secret
	// rotated.
	Secret         string            `json:"secret,omitempty"`
	State          string            `json:"state"`
	DisabledReason *string           `json:"disabled_reason,omitempty"`
	Metadata       map[string]string `json:"metadata"`
	// Headers are added to every request (they cannot replace the signature
	// headers).
	Headers   map[string]string `json:"headers"`
	TimeoutMS *int              `json:"timeout_ms"`
	// Filter is a CEL expression over data, type and key; a delivery is created
	// only when it is true (package delivery/filter).
	Filter *string `json:"filter"`
	// RetryPolicy overrides the worker's attempts and adds a maximum age.
	RetryPolicy *RetryPolicy `json:"retry_policy"`
	// MaxConcurrency caps this subscription's attempts in flight at once,
	// shared out between the live workers, at least one each (null: each
	// worker's ECS_WORKER_LANES, default 16).
	MaxConcurrency *int `json:"max_concurrency"`
	// RateLimit caps requests per second to this subscription, shared out
	// evenly between the live workers (null: unlimited).
	RateLimit *int `json:"rate_limit"`
	// Ordering is Unordered (the default) or Ordered.
	Ordering string `json:"ordering"`
	// SignatureSchemes are the signatures sent: "v1" (HMAC-SHA256 with the
	// secret) and/or "v1a" (ed25519; verify with PublicKey). Default ["v1"].
	SignatureSchemes []string `json:"signature_schemes"`
	// PublicKey verifies v1a signatures ("whpk_" + base64 of the ed25519 key).
	PublicKey string `json:"public_key,omitempty"`
	// SigningKey is the v1a private key; it never leaves the platform.
	SigningKey string `json:"-"`
	// FailingSince starts the current run of failed attempts; a subscription
	// failing for ECS_WORKER_DISABLE_AFTER (default 5 days) is disabled.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// DisabledAt is when the subscription was disabled.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	// PreviousSecretUntil, during a rotation, is when the old secret (and the old
	// signing key) stop signing beside the new ones.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	Version             int        `json:"version"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

// Attempt is one HTTP try.
type Attempt struct {
	Attempt      int       `json:"attempt"`
	StartedAt    time.Time `json:"started_at"`
	LatencyMS    float64   `json:"latency_ms"`
	StatusCode   *int      `json:"status_code"`
	Error        *string   `json:"error"`
	ResponseBody *string   `json:"response_body"`
	Succeeded    bool      `json:"succeeded"`
}

// Delivery is one event for one subscription: the dedup key is the pair.
type Delivery struct {
	ID             uuid.UUID `json:"id"`
	SubscriptionID uuid.UUID `json:"subscription_id"`
	EventID        uuid.UUID `json:"event_id"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	NextAttemptAt  time.Time `json:"next_attempt_at"`
	LastError      *string   `json:"last_error"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	AttemptLog     []Attempt `json:"attempt_log"`
}

// SubscriptionState is an event's delivery state at one subscription.
type SubscriptionState struct {
	SubscriptionID uuid.UUID  `json:"subscription_id"`
	URL            string     `json:"url"`
	DeliveryID     *uuid.UUID `json:"delivery_id"`
	// Status is a delivery status, or "not_started" before the worker reached it.
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     *string    `json:"last_error,omitempty"`
	UpdatedAt     *time.Time `json:"updated_at,omitempty"`
}

// Store reads and writes subscriptions and the delivery log.
type Store struct {
	x db.Executor // the pool, or a caller's transaction (Tx)
}

// NewStore returns a Store.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{x: pool} }

// Tx returns a store that runs in tx, so a caller can commit its writes with
// its own (the audit log).
func (s *Store) Tx(tx pgx.Tx) *Store { return &Store{x: tx} }

// CreateSubscription stores sub (everything but Version and the times set by
// the caller; Secret required; State defaults to active).
func (s *Store) CreateSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	secret := sub.Secret
	if sub.State == "" {
		sub.State = StateActive
	}
	sub.defaults()
	if sub.SigningKey == "" {
		var err error
		if sub.SigningKey, err = signature.NewSigningKey(); err != nil {
			return Subscription{}, err
		}
	}
	attempts, age, schedule := sub.RetryPolicy.columns()
	out, err := scanSubscription(s.x.QueryRow(ctx, q.CreateSubscription, sub.ID, sub.URL, sub.EventTypes, sub.Description, sub.Secret,
		sub.State, sub.DisabledReason, mapOrEmpty(sub.Metadata), mapOrEmpty(sub.Headers), sub.TimeoutMS, sub.Filter, attempts, age,
		schedule, sub.MaxConcurrency, sub.RateLimit, sub.Ordering, sub.SignatureSchemes, sub.SigningKey))
	if err != nil {
		return Subscription{}, fmt.Errorf("delivery: create subscription: %w", err)
	}
	out.Secret = secret
	return out, nil
}

func mapOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// defaults fills the settings a caller left empty.
func (sub *Subscription) defaults() {
	if sub.Ordering == "" {
		sub.Ordering = Unordered
	}
	if len(sub.SignatureSchemes) == 0 {
		sub.SignatureSchemes = []string{signature.SchemeV1}
	}
}

func scanSubscription(r pgx.Row) (Subscription, error) {
	var sub Subscription
	var attempts, age *int
	var schedule []int32
	var signingKey *string
	err := r.Scan(&sub.ID, &sub.URL, &sub.EventTypes, &sub.Description, &sub.State, &sub.DisabledReason, &sub.Metadata, &sub.Headers,
		&sub.TimeoutMS, &sub.PreviousSecretUntil, &sub.Version, &sub.CreatedAt, &sub.UpdatedAt, &sub.Filter, &attempts, &age,
		&schedule, &sub.MaxConcurrency, &sub.RateLimit, &sub.Ordering, &sub.SignatureSchemes, &signingKey, &sub.FailingSince, &sub.DisabledAt)
	if attempts != nil || age != nil || schedule != nil {
		sub.RetryPolicy = &RetryPolicy{MaxAttempts: attempts, MaxAgeSeconds: age}
		for _, s := range schedule {
			sub.RetryPolicy.ScheduleSeconds = append(sub.RetryPolicy.ScheduleSeconds, int(s))
		}
	}
	if signingKey != nil {
		sub.SigningKey = *signingKey
		if pub, kerr := signature.PublicKey(*signingKey); kerr == nil {
			sub.PublicKey = pub
		}
	}
	if sub.PreviousSecretUntil != nil && sub.PreviousSecretUntil.Before(time.Now()) {
		sub.PreviousSecretUntil = nil
	}
	return sub, err
}

// ListSubscriptions returns a page of live subscriptions, oldest first and
// without secrets: those after the id after (nil: from the start), in state
// (nil: any), at most limit (1 to 1000; default 100), and whether more follow.
func (s *Store) ListSubscriptions(ctx context.Context, after *uuid.UUID, state *string, limit int) ([]Subscription, bool, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, _ := s.x.Query(ctx, q.ListSubscriptions, after, state, limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSubscription(r) })
	if err != nil {
		return nil, false, fmt.Errorf("delivery: list subscriptions: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// GetSubscription returns one live subscription, without its secret.
func (s *Store) GetSubscription(ctx context.Context, id uuid.UUID) (Subscription, error) {
	sub, err := scanSubscription(s.x.QueryRow(ctx, q.GetSubscription, id))
	if db.IsNoRows(err) {
		return Subscription{}, ErrNotFound
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("delivery: get subscription: %w", err)
	}
	return sub, nil
}

// ErrVersionMismatch means the subscription changed since the caller read it.
var ErrVersionMismatch = errors.New("subscription was changed since it was read")

// UpdateSubscription writes sub's settable fields if the subscription is still
// at version.
func (s *Store) UpdateSubscription(ctx context.Context, sub Subscription, version int) (Subscription, error) {
	sub.defaults()
	attempts, age, schedule := sub.RetryPolicy.columns()
	var fresh *string // a key only for a subscription made before v1a existed
	if sub.SigningKey == "" {
		k, err := signature.NewSigningKey()
		if err != nil {
			return Subscription{}, err
		}
		fresh = &k
	}
	out, err := scanSubscription(s.x.QueryRow(ctx, q.UpdateSubscription, sub.ID, sub.URL, sub.EventTypes, sub.Description,
		sub.State, sub.DisabledReason, mapOrEmpty(sub.Metadata), mapOrEmpty(sub.Headers), sub.TimeoutMS, version, sub.Filter, attempts, age,
		schedule, sub.MaxConcurrency, sub.RateLimit, sub.Ordering, sub.SignatureSchemes, fresh))
	if db.IsNoRows(err) {
		if _, gerr := s.GetSubscription(ctx, sub.ID); gerr != nil {
			return Subscription{}, gerr
		}
		return Subscription{}, ErrVersionMismatch
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("delivery: update subscription: %w", err)
	}
	return out, nil
}

// RotateSecret makes secret the signing secret and issues a new v1a signing
// key; the old ones keep signing beside them until overlapUntil.
func (s *Store) RotateSecret(ctx context.Context, id uuid.UUID, secret string, overlapUntil time.Time) (Subscription, error) {
	signingKey, err := signature.NewSigningKey()
	if err != nil {
		return Subscription{}, err
	}
	out, err := scanSubscription(s.x.QueryRow(ctx, q.RotateSecret, id, secret, overlapUntil, signingKey))
	if db.IsNoRows(err) {
		return Subscription{}, ErrNotFound
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("delivery: rotate secret: %w", err)
	}
	out.Secret = secret
	return out, nil
}

// DeleteSubscription stops deliveries to id and cancels its pending ones.
func (s *Store) DeleteSubscription(ctx context.Context, id uuid.UUID) error {
	var deleted int
	if err := s.x.QueryRow(ctx, q.DeleteSubscription, id).Scan(&deleted); err != nil {
		return fmt.Errorf("delivery: delete subscription: %w", err)
	}
	if deleted == 0 {
		return ErrNotFound
	}
	return nil
}

// Filter selects deliveries; nil fields match everything.
type Filter struct {
	EventID        *uuid.UUID
	SubscriptionID *uuid.UUID
	Status         *string
	Since          *time.Time // created at or after
	Until          *time.Time // created before
	// Before is the last id of the previous page.
	Before *uuid.UUID
	// Limit caps the result (1 to 1000; default 100).
	Limit int
}

func scanDelivery(r pgx.Row) (Delivery, error) {
	var d Delivery
	err := r.Scan(&d.ID, &d.SubscriptionID, &d.EventID, &d.Status, &d.Attempts, &d.NextAttemptAt, &d.LastError, &d.CreatedAt, &d.UpdatedAt)
	d.AttemptLog = []Attempt{}
	return d, err
}

// ListDeliveries returns matching deliveries, newest first, each with its
// attempts, and whether more follow.
func (s *Store) ListDeliveries(ctx context.Context, f Filter) ([]Delivery, bool, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, _ := s.x.Query(ctx, q.ListDeliveries, f.EventID, f.SubscriptionID, f.Status, f.Since, f.Until, f.Before, f.Limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, false, fmt.Errorf("delivery: list deliveries: %w", err)
	}
	more := len(out) > f.Limit
	if more {
		out = out[:f.Limit]
	}
	if err := s.attachAttempts(ctx, out); err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// GetDelivery returns one delivery with every attempt.
func (s *Store) GetDelivery(ctx context.Context, id uuid.UUID) (Delivery, error) {
	d, err := scanDelivery(s.x.QueryRow(ctx, q.GetDelivery, id))
	if db.IsNoRows(err) {
		return Delivery{}, ErrNotFound
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery: get delivery: %w", err)
	}
	ds := []Delivery{d}
	if err := s.attachAttempts(ctx, ds); err != nil {
		return Delivery{}, err
	}
	return ds[0], nil
}

// RetryDelivery makes a dead or succeeded delivery (or a pending one waiting for
// its retry) due now: one more attempt, with the same webhook-id.
func (s *Store) RetryDelivery(ctx context.Context, id uuid.UUID) (Delivery, error) {
	var got uuid.UUID
	err := s.x.QueryRow(ctx, q.RetryDelivery, id).Scan(&got)
	if db.IsNoRows(err) {
		if _, gerr := s.GetDelivery(ctx, id); gerr != nil {
			return Delivery{}, gerr
		}
		return Delivery{}, ErrNotRetryable
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery: retry: %w", err)
	}
	return s.GetDelivery(ctx, id)
}

// attachAttempts loads the attempts of ds.
func (s *Store) attachAttempts(ctx context.Context, out []Delivery) error {
	if len(out) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(out))
	byID := make(map[uuid.UUID]*Delivery, len(out))
	for i := range out {
		ids[i] = out[i].ID
		byID[out[i].ID] = &out[i]
	}
	rows, _ := s.x.Query(ctx, q.ListAttempts, ids)
	var (
		did       uuid.UUID
		a         Attempt
		latencyUS int64
	)
	_, err := pgx.ForEachRow(rows, []any{&did, &a.Attempt, &a.StartedAt, &latencyUS, &a.StatusCode, &a.Error, &a.ResponseBody, &a.Succeeded}, func() error {
		a.LatencyMS = float64(latencyUS) / 1000
		d := byID[did]
		d.AttemptLog = append(d.AttemptLog, a)
		a = Attempt{}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delivery: list attempts: %w", err)
	}
	return nil
}

// EventStates returns, per subscription the event matches, its delivery state.
func (s *Store) EventStates(ctx context.Context, eventID uuid.UUID) ([]SubscriptionState, error) {
	rows, _ := s.x.Query(ctx, q.EventDeliveryStates, eventID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SubscriptionState, error) {
		var st SubscriptionState
		var status *string
		var attempts *int
		err := r.Scan(&st.SubscriptionID, &st.URL, &st.DeliveryID, &status, &attempts, &st.NextAttemptAt, &st.LastError, &st.UpdatedAt)
		st.Status = "not_started"
		if status != nil {
			st.Status = *status
		}
		if attempts != nil {
			st.Attempts = *attempts
		}
		if st.Status != StatusPending {
			st.NextAttemptAt = nil
		}
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: event states: %w", err)
	}
	return out, nil
}

// Replay re-sends a subscription's events accepted in [since, until): every one
// (creating deliveries it never had, as while it was disabled), or only those
// whose delivery is dead. Deliveries it never had are created only for events
// its filter accepts, as the worker would have. It returns how many deliveries
// became due.
func (s *Store) Replay(ctx context.Context, id uuid.UUID, since, until time.Time, onlyFailed bool) (int64, error) {
	sub, err := s.GetSubscription(ctx, id)
	if err != nil {
		return 0, err
	}
	tag, err := s.x.Exec(ctx, q.ReplayExisting, id, since, until, onlyFailed)
	if err != nil {
		return 0, fmt.Errorf("delivery: replay: %w", err)
	}
	n := tag.RowsAffected()
	if onlyFailed {
		return n, nil
	}
	if sub.Filter != nil {
		created, err := s.createFiltered(ctx, sub, since, until)
		return n + created, err
	}
	tag, err = s.x.Exec(ctx, q.ReplayMissing, id, since, until)
	if err != nil {
		return 0, fmt.Errorf("delivery: replay: %w", err)
	}
	return n + tag.RowsAffected(), nil
}

// createFiltered creates the deliveries a replay adds for a subscription with
// a filter: only for the events the filter accepts. An event the filter cannot
// evaluate (a missing field) gets no delivery, as in the worker.
func (s *Store) createFiltered(ctx context.Context, sub Subscription, since, until time.Time) (int64, error) {
	f, err := filter.Compile(*sub.Filter)
	if err != nil {
		return 0, fmt.Errorf("delivery: replay: subscription filter: %w", err)
	}
	var n int64
	rows, _ := s.x.Query(ctx, q.ReplayCandidates, sub.ID, since, until)
	var (
		pass           []uuid.UUID
		eid            uuid.UUID
		typ, key, data string
	)
	_, err = pgx.ForEachRow(rows, []any{&eid, &typ, &key, &data}, func() error {
		var v any
		if json.Unmarshal([]byte(data), &v) != nil {
			return nil
		}
		if ok, _ := f.Match(typ, key, v); ok {
			pass = append(pass, eid)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delivery: replay: %w", err)
	}
	for len(pass) > 0 {
		chunk := pass[:min(len(pass), 1000)]
		pass = pass[len(chunk):]
		tag, err := s.x.Exec(ctx, q.ReplayCreate, sub.ID, chunk)
		if err != nil {
			return 0, fmt.Errorf("delivery: replay: %w", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

// Redrive makes dead deliveries due again (optionally of one subscription,
// created in a window); they keep their webhook-ids. It returns how many.
func (s *Store) Redrive(ctx context.Context, subscription *uuid.UUID, since, until *time.Time) (int64, error) {
	tag, err := s.x.Exec(ctx, q.RedriveDead, subscription, since, until)
	if err != nil {
		return 0, fmt.Errorf("delivery: redrive: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Signing is what signs a subscription's webhooks. Only the platform itself
// may see it.
type Signing struct {
	Secret             string  // the v1 secret
	PreviousSecret     *string // during a rotation
	SigningKey         *string // the v1a key ("whsk_")
	PreviousSigningKey *string // during a rotation
	Schemes            []string
}

// SigningSecrets returns what signs a subscription's webhooks.
func (s *Store) SigningSecrets(ctx context.Context, id uuid.UUID) (Signing, error) {
	var sg Signing
	err := s.x.QueryRow(ctx, q.SigningSecrets, id).Scan(&sg.Secret, &sg.PreviousSecret, &sg.SigningKey, &sg.PreviousSigningKey, &sg.Schemes)
	if db.IsNoRows(err) {
		return Signing{}, ErrNotFound
	}
	if err != nil {
		return Signing{}, fmt.Errorf("delivery: signing secrets: %w", err)
	}
	return sg, nil
}

// TypeMatches says whether an event type is wanted by a subscription's
// patterns: exact names, "prefix.*" (every type under prefix) and "*". It
// mirrors the SQL function ecs_type_matches.
func TypeMatches(t string, patterns []string) bool {
	for _, p := range patterns {
		if p == t || p == "*" {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasSuffix(prefix, ".") && strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}

// EnsureSigningKey returns the subscription's v1a signing key, issuing one if
// it was created before v1a existed.
func (s *Store) EnsureSigningKey(ctx context.Context, id uuid.UUID) (string, error) {
	fresh, err := signature.NewSigningKey()
	if err != nil {
		return "", err
	}
	var key string
	err = s.x.QueryRow(ctx, q.EnsureSigningKey, id, fresh).Scan(&key)
	if db.IsNoRows(err) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("delivery: ensure signing key: %w", err)
	}
	return key, nil
}

// Keys decodes the keys of the schemes the subscription asked for: HMAC keys
// for v1, ed25519 keys for v1a, each the current one then, during a rotation,
// the previous one. A current key that does not decode is an error (nothing
// unsigned is ever sent); a bad previous key is skipped.
func (sg Signing) Keys() (hmacKeys [][]byte, edKeys []ed25519.PrivateKey, err error) {
	for _, scheme := range sg.Schemes {
		switch scheme {
		case signature.SchemeV1:
			key, err := signature.Key(sg.Secret)
			if err != nil {
				return nil, nil, err
			}
			hmacKeys = append(hmacKeys, key)
			if sg.PreviousSecret != nil {
				if old, err := signature.Key(*sg.PreviousSecret); err == nil {
					hmacKeys = append(hmacKeys, old)
				}
			}
		case signature.SchemeV1a:
			if sg.SigningKey == nil {
				return nil, nil, signature.ErrBadSigningKey
			}
			key, err := signature.SigningKey(*sg.SigningKey)
			if err != nil {
				return nil, nil, err
			}
			edKeys = append(edKeys, key)
			if sg.PreviousSigningKey != nil {
				if old, err := signature.SigningKey(*sg.PreviousSigningKey); err == nil {
					edKeys = append(edKeys, old)
				}
			}
		}
	}
	if len(hmacKeys) == 0 && len(edKeys) == 0 {
		return nil, nil, errors.New("delivery: subscription has no signature scheme")
	}
	return hmacKeys, edKeys, nil
}

// PlatformTypePrefix starts the names of the platform's own event types; users
// can subscribe to them but neither create nor publish them.
const PlatformTypePrefix = "ecs."

// EventSubscriptionDisabled is the platform's own event type, emitted when the
// worker disables a subscription (410 Gone, or failing for
// ECS_WORKER_DISABLE_AFTER). Operators subscribe to it like to any other type.
const EventSubscriptionDisabled = "ecs.subscription.disabled"

// DisabledEvent is the data of an ecs.subscription.disabled event.
type DisabledEvent struct {
	SubscriptionID uuid.UUID  `json:"subscription_id"`
	URL            string     `json:"url"`
	Reason         string     `json:"reason"`
	FailingSince   *time.Time `json:"failing_since"`
	DisabledAt     time.Time  `json:"disabled_at"`
}

// disabledEventSchema describes DisabledEvent for the event catalog.
const disabledEventSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["subscription_id", "url", "reason", "disabled_at"],
  "properties": {
    "subscription_id": {"type": "string", "format": "uuid"},
    "url": {"type": "string"},
    "reason": {"type": "string"},
    "failing_since": {"type": ["string", "null"], "format": "date-time"},
    "disabled_at": {"type": "string", "format": "date-time"}
  }
}`

// EnsureEventTypes adds the platform's own event types to the catalog if they
// are missing, so that subscriptions to them can be made before the first one
// is emitted. The API and the worker both call it at start.
func EnsureEventTypes(ctx context.Context, events *outbox.Store) error {
	_, err := events.CreateEventType(ctx, EventSubscriptionDisabled, outbox.EventTypeSpec{
		Description: "The platform disabled a subscription: its endpoint answered 410 Gone, or every attempt failed for ECS_WORKER_DISABLE_AFTER.",
		Schema:      []byte(disabledEventSchema),
		Enabled:     true,
	})
	if err != nil && !errors.Is(err, outbox.ErrEventTypeExists) {
		return fmt.Errorf("delivery: ensure %s: %w", EventSubscriptionDisabled, err)
	}
	return nil
}
