package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/outbox"
)

// poll claims due retries and deliveries orphaned by dead workers, and queues
// them on their lanes.
func (w *Worker) poll(ctx context.Context, id uuid.UUID, d *dispatcher, log *slog.Logger) {
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.retryLater(ctx)
		for {
			n, err := w.claim(ctx, id, d, log)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("claiming due deliveries failed", "error", err)
				}
				break
			}
			if n < w.cfg.ClaimBatch {
				break
			}
		}
	}
}

func (w *Worker) claim(ctx context.Context, id uuid.UUID, d *dispatcher, log *slog.Logger) (int, error) {
	rows, _ := w.pool.Query(ctx, q.ClaimDue, id, w.cfg.StaleAfter.String(), w.cfg.ClaimBatch)
	var (
		j         job
		secret    string
		previous  *string
		headers   map[string]string
		timeoutMS *int
		created   time.Time
		attempts  *int
		maxAge    *int
		typ, data string
		createdAt time.Time
		deleted   bool
		jobs      []job
		cancelled []uuid.UUID
	)
	n, err := pgx.ForEachRow(rows, []any{&j.deliveryID, &j.subscriptionID, &j.eventID, &j.attempts, &j.url, &secret,
		&previous, &headers, &timeoutMS, &created, &attempts, &maxAge, &typ, &j.orderKey, &data, &createdAt, &deleted}, func() error {
		if deleted {
			cancelled = append(cancelled, j.deliveryID)
			return nil
		}
		if err := j.setSubscription(secret, previous, headers, timeoutMS); err != nil {
			log.Error("subscription has an unusable secret", "subscription_id", j.subscriptionID, "error", err)
		}
		j.setPolicy(created, attempts, maxAge)
		j.body = outbox.WebhookBody(typ, createdAt, []byte(data))
		jobs = append(jobs, j)
		j = job{}
		return nil
	})
	if err != nil {
		return 0, err
	}
	w.metrics.claimed.Add(float64(len(jobs)))
	for _, c := range cancelled {
		_, _ = w.pool.Exec(ctx, q.Cancel, c, id)
	}
	var overflow []uuid.UUID
	for _, j := range jobs {
		if !d.offer(j) {
			overflow = append(overflow, j.deliveryID)
		}
	}
	if len(overflow) > 0 {
		d.release(ctx, overflow)
		// A full lane means this worker is saturated: stop claiming this round.
		return 0, nil
	}
	return int(n.RowsAffected()), nil
}
