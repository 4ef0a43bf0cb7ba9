package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/rig"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
)

const idleMethod = `All three roles run with no traffic (after the earlier scenarios, if any,
have drained). After %s to settle, each process's CPU time (utime + stime
from /proc) is read at the start and the end of a %s window; the figure is
the share of one core it kept busy. RSS is VmRSS at the end. The roles poll on
purpose (relay: every ECS_RELAY_POLL_INTERVAL, 1s; worker: due retries every
ECS_WORKER_POLL_INTERVAL, 1s, heartbeat every 5s); "does not spin" is taken to
mean under 1 %% of one core.`

func idle(ctx context.Context, e *Env, sc *report.Scenario) error {
	settle, window := 2*time.Second, 10*time.Second
	if e.Cfg.Quick {
		settle, window = time.Second, 3*time.Second
	}
	sc.Method = fmt.Sprintf(idleMethod, settle, window)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	procs := map[string]*rig.Proc{}
	for _, n := range []string{roles.API, roles.Relay, roles.Worker} {
		if p := e.Rig.Proc(n); p != nil {
			procs[n] = p
		}
	}
	if k := e.Rig.Kafka(); k != nil {
		procs["kafka (kfake)"] = k
	}
	before := map[string]rig.Usage{}
	for n, p := range procs {
		u, err := p.Usage()
		if err != nil {
			return err
		}
		before[n] = u
	}
	pid, err := e.Rig.PostgresPID()
	if err != nil {
		return err
	}
	pgBefore, err := rig.TreeCPU(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	over := time.Since(start)
	for _, n := range []string{roles.API, roles.Relay, roles.Worker, "kafka (kfake)"} {
		p := procs[n]
		if p == nil {
			continue
		}
		u, err := p.Usage()
		if err != nil {
			return err
		}
		share := 100 * (u.CPU - before[n].CPU).Seconds() / over.Seconds()
		row := report.Row{Name: n + " idle CPU", Value: share, Unit: "% of a core",
			Detail: fmt.Sprintf("RSS %.0f MiB", float64(u.RSS)/(1<<20))}
		if n != "kafka (kfake)" {
			row.Target, row.Verdict = "< 1 % of a core", report.Check(share < 1)
		}
		sc.Rows = append(sc.Rows, row)
	}
	pgAfter, err := rig.TreeCPU(pid)
	if err != nil {
		return err
	}
	sc.Rows = append(sc.Rows, report.Row{Name: "PostgreSQL idle CPU (all backends)", Value: 100 * (pgAfter - pgBefore).Seconds() / over.Seconds(),
		Unit: "% of a core", Detail: "autovacuum after the earlier scenarios may show here"})
	sc.Notes = append(sc.Notes, "CPU time has a resolution of 10 ms (one clock tick), i.e. "+
		fmt.Sprintf("%.2f %% of a core over this window.", 100*0.01/over.Seconds()))
	return nil
}
