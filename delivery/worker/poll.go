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
	lastReap := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := time.Now(); now.Sub(lastReap) >= min(w.cfg.LaneIdle, time.Minute) {
			if n := d.reap(now, w.cfg.LaneIdle); n > 0 {
				log.Debug("closed idle subscription lanes", "subscriptions", n)
			}
			lastReap = now
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
		deleted   bool
		cols      jobColumns
		typ, data string
		key       string
		createdAt time.Time
		jobs      []job
		cancelled []uuid.UUID
	)
	targets := append(append([]any{&deleted}, cols.targets()...), &typ, &key, &data, &createdAt)
	n, err := pgx.ForEachRow(rows, targets, func() error {
		j := cols.job()
		if deleted {
			cancelled = append(cancelled, j.deliveryID)
			return nil
		}
		if j.keyErr != nil {
			log.Error("subscription has unusable signing keys", "subscription_id", j.subscriptionID, "error", j.keyErr)
		}
		j.orderKey = key
		j.body = outbox.WebhookBody(typ, createdAt, []byte(data))
		jobs = append(jobs, j)
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
