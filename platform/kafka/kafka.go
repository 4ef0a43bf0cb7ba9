// Package kafka holds the Kafka plumbing shared by the relay and the worker: client
// options, topic creation through kadm, and the embedded kfake broker the dev app
// and fast tests use.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/platform/config"
)

// Header names carried by every event record.
const (
	HeaderEventID   = "ecs-event-id"
	HeaderEventType = "ecs-event-type"
	// HeaderKeySeq is the event's position among the events of its key (1, 2,
	// ...), absent for events without a key.
	HeaderKeySeq = "ecs-key-seq"
)

// Header names of dead-letter records, beside HeaderEventID.
const (
	HeaderDLQSubscription = "ecs-subscription-id"
	HeaderDLQDelivery     = "ecs-delivery-id"
	HeaderDLQAttempts     = "ecs-attempts"
	HeaderDLQReason       = "ecs-dlq-reason"
)

// Config holds the topic layout.
type Config struct {
	// Brokers are the seed brokers (ECS_KAFKA_BROKERS).
	Brokers []string
	// TopicPrefix is prepended to an event type's name to form its topic
	// (ECS_KAFKA_TOPIC_PREFIX, default "ecs.events.").
	TopicPrefix string
	// DLQTopic receives exhausted deliveries (ECS_KAFKA_DLQ_TOPIC, default "ecs.dlq").
	DLQTopic string
	// Partitions for topics the platform creates (ECS_KAFKA_TOPIC_PARTITIONS,
	// default 6): the worker's parallelism per event type.
	Partitions int32
	// ReplicationFactor for created topics (ECS_KAFKA_REPLICATION_FACTOR,
	// default -1: the broker's default.replication.factor).
	ReplicationFactor int16
}

// LoadConfig reads the Kafka settings.
func LoadConfig(e *config.Env) Config {
	return Config{
		Brokers:           e.List("ECS_KAFKA_BROKERS", nil),
		TopicPrefix:       e.String("ECS_KAFKA_TOPIC_PREFIX", "ecs.events."),
		DLQTopic:          e.String("ECS_KAFKA_DLQ_TOPIC", "ecs.dlq"),
		Partitions:        int32(e.Int("ECS_KAFKA_TOPIC_PARTITIONS", 6)),
		ReplicationFactor: int16(e.Int("ECS_KAFKA_REPLICATION_FACTOR", -1)),
	}
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = "ecs.events."
	}
	if c.DLQTopic == "" {
		c.DLQTopic = "ecs.dlq"
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	return c
}

// Validate checks c.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("ECS_KAFKA_BROKERS is required"))
	}
	if c.Partitions < 1 {
		errs = append(errs, errors.New("ECS_KAFKA_TOPIC_PARTITIONS must be at least 1"))
	}
	if c.ReplicationFactor < -1 || c.ReplicationFactor == 0 {
		errs = append(errs, errors.New("ECS_KAFKA_REPLICATION_FACTOR must be -1 or at least 1"))
	}
	return errors.Join(errs...)
}

// Topic returns the topic of an event type.
func (c Config) Topic(eventType string) string { return c.TopicPrefix + eventType }

// Topics creates topics on demand and remembers which exist, so the relay pays for
// a CreateTopics round trip once per topic per process.
type Topics struct {
	adm  *kadm.Client
	cfg  Config
	mu   sync.Mutex
	seen map[string]bool
}

// NewTopics uses cl for admin requests.
func NewTopics(cl *kgo.Client, cfg Config) *Topics {
	return &Topics{adm: kadm.NewClient(cl), cfg: cfg, seen: map[string]bool{}}
}

// Ensure creates each topic that this process has not seen yet; a topic that
// already exists is fine. It returns the topics it had not seen before.
func (t *Topics) Ensure(ctx context.Context, topics ...string) (fresh []string, err error) {
	t.mu.Lock()
	var missing []string
	for _, tp := range topics {
		if !t.seen[tp] {
			missing = append(missing, tp)
		}
	}
	t.mu.Unlock()
	if len(missing) == 0 {
		return nil, nil
	}
	resp, err := t.adm.CreateTopics(ctx, t.cfg.Partitions, t.cfg.ReplicationFactor, nil, missing...)
	if err != nil {
		return nil, fmt.Errorf("kafka: create topics %v: %w", missing, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return nil, fmt.Errorf("kafka: create topic %s: %w", r.Topic, r.Err)
		}
	}
	t.mu.Lock()
	for _, tp := range missing {
		t.seen[tp] = true
	}
	t.mu.Unlock()
	return missing, nil
}

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping: %w", err)
	}
	return nil
}

// Embedded is an in-process Kafka cluster (franz-go's kfake) speaking the real
// wire protocol.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts a one-broker kfake cluster on 127.0.0.1. dataDir, when not
// empty, persists its log so a restarted dev app keeps unconsumed records.
func StartEmbedded(dataDir string, log *slog.Logger) (*Embedded, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(6), kfake.AllowAutoTopicCreation()}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: start embedded broker: %w", err)
	}
	log.Debug("embedded kafka started", "brokers", c.ListenAddrs())
	return &Embedded{cluster: c}, nil
}

// Brokers are the embedded cluster's listen addresses.
func (e *Embedded) Brokers() []string { return e.cluster.ListenAddrs() }

// Cluster exposes kfake for failure injection in tests.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the cluster.
func (e *Embedded) Close() { e.cluster.Close() }
