// Package roles runs one part of the platform in a child process of the load
// generator: the api, relay and worker roles with the same wiring as
// apps/api, apps/relay and apps/worker (platform/role), or the embedded Kafka
// broker. Each child also serves net/http/pprof on loopback, so the load
// generator can profile the role under load; production binaries have no
// such listener.
//
// The load generator starts its own executable with EnvRole set; Main below
// then runs the role instead of the benchmark. Keeping every role in its own
// process makes CPU and memory per role measurable from /proc, as in production.
package roles

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Environment variables the load generator sets for a child.
const (
	// EnvRole names the role to run: api, relay, worker or kafka.
	EnvRole = "ECS_LOADGEN_ROLE"
	// EnvPprofAddr is the loopback address of the child's pprof listener.
	EnvPprofAddr = "ECS_LOADGEN_PPROF_ADDR"
	// EnvKafkaPort is the port the embedded broker listens on (role kafka).
	EnvKafkaPort = "ECS_LOADGEN_KAFKA_PORT"
)

// Role names.
const (
	API    = "api"
	Relay  = "relay"
	Worker = "worker"
	Kafka  = "kafka"
)

// IsChild reports whether this process was started as a role.
func IsChild() bool { return os.Getenv(EnvRole) != "" }

// Main runs the role named by EnvRole and returns when it has stopped.
func Main() {
	name := os.Getenv(EnvRole)
	if addr := os.Getenv(EnvPprofAddr); addr != "" {
		if err := servePprof(addr); err != nil {
			service.Fatal("loadgen-"+name, err)
		}
	}
	switch name {
	case API:
		role.Main(api.Role())
	case Relay:
		role.Main(relay.Role())
	case Worker:
		role.Main(worker.Role())
	case Kafka:
		if err := runKafka(); err != nil {
			service.Fatal("loadgen-kafka", err)
		}
	default:
		service.Fatal("loadgen", fmt.Errorf("%s=%q is not a role (api, relay, worker, kafka)", EnvRole, name))
	}
}

// runKafka serves a one-broker kfake cluster, configured like
// platform/kafka.StartEmbedded, until SIGTERM or SIGINT.
func runKafka() error {
	port, err := strconv.Atoi(os.Getenv(EnvKafkaPort))
	if err != nil || port <= 0 {
		return fmt.Errorf("%s must be a port number", EnvKafkaPort)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(6), kfake.AllowAutoTopicCreation(), kfake.Ports(port))
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	c.Close()
	return nil
}

// servePprof serves the pprof handlers on addr in the background.
func servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// The listener lives as long as the process; it ends with it.
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "pprof:", err)
		}
	}()
	return nil
}
