package scenario

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
)

// fanout is the number of subscriptions of scenario 6.
const fanout = 50

const fanoutMethod = `All three roles run. One event type with %d subscriptions, each to its own
path on the load generator's receiver. After a warm-up event, %s events are
sent at once (POST /v1/events:batch, 100 per call), i.e. %s deliveries; the
rate is deliveries / (first send → last arrival). CPU per delivery is the
worker process's CPU time (utime + stime from /proc) over that interval
divided by the deliveries; PostgreSQL's (postmaster and backends) likewise.
Ceiling: the bare net/http client of scenario 4 (the same receiver, 64
connections). Issue 5 sets no target for this scenario.`

func fanOut(ctx context.Context, e *Env, sc *report.Scenario) error {
	events := 1000
	if e.Cfg.Quick {
		events = 100
	}
	total := int64(events * fanout)
	sc.Method = fmt.Sprintf(fanoutMethod, fanout, report.Num(float64(events)), report.Num(float64(total)))
	ceiling, err := e.httpCeiling(ctx)
	if err != nil {
		return err
	}
	const typ = "bench.fanout"
	if _, err := e.eventType(ctx, typ); err != nil {
		return err
	}
	cl := e.Client()
	for i := range fanout {
		if _, err := cl.Subscribe(ctx, e.Recv.URL("/fanout/"+strconv.Itoa(i)), typ); err != nil {
			return err
		}
	}
	var seq atomic.Int64
	base := e.Recv.Unique()
	if _, _, err := publishOne(ctx, cl, typ, "s6", seq.Add(1)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if !waitFor(ctx, e, base+fanout, 60*time.Second) {
		return fmt.Errorf("warm-up: %d of %d webhooks arrived in 60s", e.Recv.Unique()-base, fanout)
	}

	base = e.Recv.Unique()
	wait := e.profile(ctx, "s6", 0, 2*time.Second, roles.Worker)
	m := e.meter(roles.API, roles.Relay, roles.Worker)
	start := time.Now()
	for sent := 0; sent < events; sent += 100 {
		size := min(100, events-sent)
		first := seq.Add(int64(size)) - int64(size) + 1
		code, raw, err := cl.Post(ctx, "/v1/events:batch", batchBody(nil, "s6", typ, first, size))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("POST /v1/events:batch: status %d: %.200s", code, raw)
		}
	}
	if !waitFor(ctx, e, base+total, 5*time.Minute) {
		return fmt.Errorf("%d of %d deliveries arrived in 5 minutes", e.Recv.Unique()-base, total)
	}
	took := time.Since(start)
	used, over := m.stop()
	files := wait()
	rate := float64(total) / took.Seconds()
	perDelivery := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(total) }
	sc.Rows = append(sc.Rows,
		report.Row{
			Name: fmt.Sprintf("fan-out to %d subscriptions", fanout), Value: rate, Unit: "deliveries/s",
			CeilingName: ceiling.CeilingName, Ceiling: ceiling.Ceiling, CeilingLatency: ceiling.CeilingLatency,
			Detail: fmt.Sprintf("%s deliveries in %s", report.Num(float64(total)), took.Round(10*time.Millisecond)),
		},
		report.Row{Name: "worker CPU per delivery", Value: perDelivery(used[roles.Worker]), Unit: "µs"},
		report.Row{Name: "PostgreSQL CPU per delivery", Value: perDelivery(used["postgres"]), Unit: "µs"},
	)
	sc.Notes = append(sc.Notes, cpuNote("the fan-out", used, over))
	sc.Notes = append(sc.Notes, profileNote(files)...)
	return nil
}
