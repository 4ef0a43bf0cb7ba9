// Package delivery owns subscriptions and the delivery log: which subscriber gets
// which event, every attempt made, and what became of it. Package
// delivery/worker does the delivering.
package delivery

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
	RedriveDead         string `sql:"redrive_dead"`
	SigningSecrets      string `sql:"signing_secrets"`
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

// RetryPolicy bounds a subscription's retries; nil fields keep the worker's
// defaults.
type RetryPolicy struct {
	MaxAttempts   *int `json:"max_attempts,omitempty"`
	MaxAgeSeconds *int `json:"max_age_seconds,omitempty"`
}

func (p *RetryPolicy) columns() (attempts, age *int) {
	if p == nil {
		return nil, nil
	}
	return p.MaxAttempts, p.MaxAgeSeconds
}

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
	// PreviousSecretUntil, during a rotation, is when the old secret stops
	// signing beside the new one.
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
	attempts, age := sub.RetryPolicy.columns()
	out, err := scanSubscription(s.x.QueryRow(ctx, q.CreateSubscription, sub.ID, sub.URL, sub.EventTypes, sub.Description, sub.Secret,
		sub.State, sub.DisabledReason, mapOrEmpty(sub.Metadata), mapOrEmpty(sub.Headers), sub.TimeoutMS, sub.Filter, attempts, age))
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

func scanSubscription(r pgx.Row) (Subscription, error) {
	var sub Subscription
	var attempts, age *int
	err := r.Scan(&sub.ID, &sub.URL, &sub.EventTypes, &sub.Description, &sub.State, &sub.DisabledReason, &sub.Metadata, &sub.Headers,
		&sub.TimeoutMS, &sub.PreviousSecretUntil, &sub.Version, &sub.CreatedAt, &sub.UpdatedAt, &sub.Filter, &attempts, &age)
	if attempts != nil || age != nil {
		sub.RetryPolicy = &RetryPolicy{MaxAttempts: attempts, MaxAgeSeconds: age}
	}
	if sub.PreviousSecretUntil != nil && sub.PreviousSecretUntil.Before(time.Now()) {
		sub.PreviousSecretUntil = nil
	}
	return sub, err
}

// ListSubscriptions returns live subscriptions, without secrets.
func (s *Store) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	rows, _ := s.x.Query(ctx, q.ListSubscriptions)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSubscription(r) })
	if err != nil {
		return nil, fmt.Errorf("delivery: list subscriptions: %w", err)
	}
	return out, nil
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
	attempts, age := sub.RetryPolicy.columns()
	out, err := scanSubscription(s.x.QueryRow(ctx, q.UpdateSubscription, sub.ID, sub.URL, sub.EventTypes, sub.Description,
		sub.State, sub.DisabledReason, mapOrEmpty(sub.Metadata), mapOrEmpty(sub.Headers), sub.TimeoutMS, version, sub.Filter, attempts, age))
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

// RotateSecret makes secret the signing secret; the old one keeps signing
// beside it until overlapUntil.
func (s *Store) RotateSecret(ctx context.Context, id uuid.UUID, secret string, overlapUntil time.Time) (Subscription, error) {
	out, err := scanSubscription(s.x.QueryRow(ctx, q.RotateSecret, id, secret, overlapUntil))
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
// whose delivery is dead. It returns how many deliveries became due.
func (s *Store) Replay(ctx context.Context, id uuid.UUID, since, until time.Time, onlyFailed bool) (int64, error) {
	if _, err := s.GetSubscription(ctx, id); err != nil {
		return 0, err
	}
	tag, err := s.x.Exec(ctx, q.ReplayExisting, id, since, until, onlyFailed)
	if err != nil {
		return 0, fmt.Errorf("delivery: replay: %w", err)
	}
	n := tag.RowsAffected()
	if !onlyFailed {
		tag, err = s.x.Exec(ctx, q.ReplayMissing, id, since, until)
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

// SigningSecrets returns a subscription's secret and, during a rotation, the
// previous one. Only the platform itself may see them (to sign).
func (s *Store) SigningSecrets(ctx context.Context, id uuid.UUID) (string, *string, error) {
	var secret string
	var previous *string
	err := s.x.QueryRow(ctx, q.SigningSecrets, id).Scan(&secret, &previous)
	if db.IsNoRows(err) {
		return "", nil, ErrNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("delivery: signing secrets: %w", err)
	}
	return secret, previous, nil
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
