// Command loadgen benchmarks the platform on this machine and writes
// docs/benchmarks.md: for each scenario of issue 5 the measured figure, the
// ceiling its dependencies allow for the same work (measured in the same
// run), the ratio, the target, and a latency histogram.
//
// It starts everything it needs: a local PostgreSQL, the embedded Kafka (or
// the brokers in ECS_KAFKA_BROKERS), and the api, relay and worker roles as
// child processes of its own executable; it drives the real HTTP API over
// loopback and receives the webhooks itself. Run it from the module root:
//
//	go run ./apps/loadgen                 # full run (about 10 minutes), writes docs/benchmarks.md
//	go run ./apps/loadgen -quick          # under two minutes, prints the ratios
//	go run ./apps/loadgen -scenarios 1,5 -profile /tmp/prof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/scenario"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/logging"
)

const name = "loadgen"

const usage = `usage: loadgen [-quick] [-out file] [-scenarios 1,2,...] [-profile dir]

Benchmarks the platform on this machine against the ceilings of its
dependencies and writes a Markdown report. Run it from the module root.
ECS_KAFKA_BROKERS points it at a real Kafka instead of the embedded one.

Scenarios: 1 ingest single events, 2 ingest batches, 3 relay drain,
4 end to end, 5 cost of NOTIFY, 6 fan-out, 7 idle cost.

Flags:
`

func main() {
	if roles.IsChild() {
		roles.Main()
		return
	}
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", name, strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " "))
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	quick := fs.Bool("quick", false, "short measurements; the whole run takes under two minutes")
	out := fs.String("out", "", "write the Markdown report here (default docs/benchmarks.md; with -quick no file unless set)")
	list := fs.String("scenarios", "1,2,3,4,5,6,7", "comma-separated scenario numbers to run")
	profile := fs.String("profile", "", "write CPU and allocation profiles of the roles under load to this directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stderr, usage)
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%w (run with -h for usage)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (run with -h for usage)", fs.Arg(0))
	}
	ids, err := parseScenarios(*list)
	if err != nil {
		return err
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if !outSet && !*quick {
		*out = filepath.Join("docs", "benchmarks.md")
	}
	if *out != "" {
		if _, err := os.Stat(filepath.Dir(*out)); err != nil {
			return fmt.Errorf("-out: directory of %s: %w", *out, err)
		}
	}
	env := config.FromOS()
	brokers := env.List("ECS_KAFKA_BROKERS", nil)
	if err := env.Err(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logging.New(os.Stderr, "info", "auto")
	rep, err := scenario.Run(ctx, scenario.Config{
		Quick: *quick, Scenarios: ids, ProfileDir: *profile, Brokers: brokers,
		Command: commandLine(), Log: log,
	})
	if len(rep.Scenarios) > 0 {
		rep.Console(os.Stdout)
		if *out != "" {
			if werr := os.WriteFile(*out, rep.Markdown(), 0o644); werr != nil {
				return errors.Join(err, fmt.Errorf("write report: %w", werr))
			}
			log.Info("report written", "file", *out)
		}
	}
	if err != nil {
		return err
	}
	for _, s := range rep.Scenarios {
		if s.Err != nil {
			return fmt.Errorf("scenario %d did not finish: %w", s.ID, s.Err)
		}
	}
	return nil
}

// parseScenarios reads "1,2,5".
func parseScenarios(s string) ([]int, error) {
	var ids []int
	seen := map[int]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		id, err := strconv.Atoi(part)
		if err != nil || id < 1 || id > 7 {
			return nil, fmt.Errorf("-scenarios: %q is not a scenario number (1 to 7)", part)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// commandLine is how this run was started, for the report.
func commandLine() string {
	return strings.TrimSpace("go run ./apps/loadgen " + strings.Join(os.Args[1:], " "))
}
