package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

// DeadLetter is one record of the dead-letter topic.
type DeadLetter struct {
	Partition      int32             `json:"partition"`
	Offset         int64             `json:"offset"`
	Timestamp      time.Time         `json:"timestamp"`
	Key            string            `json:"key"`
	EventID        string            `json:"event_id"`
	SubscriptionID string            `json:"subscription_id"`
	DeliveryID     string            `json:"delivery_id"`
	Attempts       int               `json:"attempts"`
	Reason         string            `json:"reason"`
	Headers        map[string]string `json:"headers"`
	Body           json.RawMessage   `json:"body"`
}

// deadLetterWait bounds reading the topic for one listing.
const deadLetterWait = 5 * time.Second

// listDeadLetters reads the newest records of the dead-letter topic (newest
// first), optionally of one subscription. Redrive them with POST
// /v1/deliveries:redrive: the deliveries they record are the source of truth.
func (a *API) listDeadLetters(c *gin.Context) {
	if len(a.cfg.KafkaBrokers) == 0 {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusServiceUnavailable, "dead-letters-unavailable",
			"this API has no Kafka brokers (set ECS_KAFKA_BROKERS); GET /v1/deliveries?status=dead lists the same deliveries"))
		return
	}
	qp := &query{c: c}
	limit, sub := qp.limit(), qp.uuid("subscription_id")
	if !qp.ok() {
		return
	}
	ctx, cancel := context.WithTimeout(c, deadLetterWait)
	defer cancel()
	out, err := a.readDeadLetters(ctx, limit, sub)
	if err != nil {
		a.internal(c, err)
		return
	}
	if sub != nil {
		kept := out[:0]
		for _, d := range out {
			if d.SubscriptionID == sub.String() {
				kept = append(kept, d)
			}
		}
		out = kept
	}
	if len(out) > limit {
		out = out[:limit]
	}
	c.JSON(http.StatusOK, pageOf(out, false, nil))
}

// readDeadLetters reads up to limit of the newest records of each partition.
// With a subscription filter it reads further back (up to 10x), since other
// subscriptions' records are skipped.
func (a *API) readDeadLetters(ctx context.Context, limit int, filtered any) ([]DeadLetter, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.cfg.KafkaBrokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := a.cfg.DLQTopic
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	back := int64(limit)
	if filtered != nil {
		back *= 10
	}
	from := map[string]map[int32]kgo.Offset{topic: {}}
	want := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		start := o.Offset - back
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Offset > start {
			start = s.Offset
		}
		if start < o.Offset {
			from[topic][o.Partition] = kgo.NewOffset().At(start)
			want += int(o.Offset - start)
		}
	})
	if ends.Error() != nil && !errors.Is(ends.Error(), context.Canceled) && want == 0 {
		return nil, ends.Error()
	}
	var out []DeadLetter
	if want == 0 {
		return out, nil
	}
	cl.AddConsumePartitions(from)
	for len(out) < want {
		fetches := cl.PollRecords(ctx, want-len(out))
		if ctx.Err() != nil {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) { out = append(out, deadLetter(r)) })
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Timestamp.After(out[j].Timestamp) })
	return out, nil
}

func deadLetter(r *kgo.Record) DeadLetter {
	d := DeadLetter{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: string(r.Key), Headers: map[string]string{}}
	for _, h := range r.Headers {
		d.Headers[h.Key] = string(h.Value)
	}
	d.EventID, d.SubscriptionID = d.Headers[kafka.HeaderEventID], d.Headers[kafka.HeaderDLQSubscription]
	d.DeliveryID, d.Reason = d.Headers[kafka.HeaderDLQDelivery], d.Headers[kafka.HeaderDLQReason]
	d.Attempts, _ = strconv.Atoi(d.Headers[kafka.HeaderDLQAttempts])
	if json.Valid(r.Value) {
		d.Body = r.Value
	}
	return d
}
