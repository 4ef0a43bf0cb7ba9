package scenario

import (
	"context"
	"fmt"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
)

const notifyMethod = `Scenario 1's pgbench ceiling (64 connections, the API's four statements in
one transaction per event) in three variants: (a) without NOTIFY; (b) with
pg_notify('ecs_outbox', '') in the transaction's last statement, which is what
the API did before this scenario showed its cost: PostgreSQL queues
notifications at commit under a database-wide lock held through the commit's
WAL flush, so notifying transactions commit one at a time; (c) without NOTIFY
in the transaction, plus one more connection sending a bare NOTIFY every 2 ms,
the most the API's waker (outbox/wake.go) ever sends: one NOTIFY at a time,
after commits, shared by every request that committed meanwhile, and at least
2 ms after the previous one. The
variants rotate (%d rounds, each measurement from the same state as in
scenario 1) and their rates are averaged; a variant's cost is 1 − its rate /
the rate of (a).`

func notifyCost(ctx context.Context, e *Env, sc *report.Scenario) error {
	rounds := 3
	if e.Cfg.Quick {
		rounds = 2
	}
	sc.Method = fmt.Sprintf(notifyMethod, rounds)
	const typ = "bench.notify"
	version, err := e.eventType(ctx, typ)
	if err != nil {
		return err
	}
	type variant struct {
		name      string
		script    string
		companion string
		runs      []pgbenchResult
	}
	vs := []*variant{
		{name: "no NOTIFY", script: pgbenchScript(typ, version, false)},
		{name: "NOTIFY in the transaction", script: pgbenchScript(typ, version, true)},
		{name: "NOTIFY after commit", script: pgbenchScript(typ, version, false), companion: notifyScript},
	}
	for r := range rounds {
		for i := range vs {
			v := vs[(i+r)%len(vs)] // rotate the order, so drift does not favour one
			if err := e.reset(ctx); err != nil {
				return err
			}
			res, err := e.runPgbench(ctx, "notify", v.script, ingestClients, v.companion)
			if err != nil {
				return err
			}
			v.runs = append(v.runs, res)
		}
	}
	none, inTx, after := meanRate(vs[0].runs), meanRate(vs[1].runs), meanRate(vs[2].runs)
	noneLat := last(vs[0].runs).Latency
	inTxLat, afterLat := last(vs[1].runs).Latency, last(vs[2].runs).Latency
	var notifies float64
	for _, r := range vs[2].runs {
		notifies += r.CompanionTPS / float64(len(vs[2].runs))
	}
	sc.Rows = append(sc.Rows,
		report.Row{
			Name: "pgbench, NOTIFY in each transaction (the design before)", Value: inTx, Unit: "tx/s",
			CeilingName: "the same without NOTIFY", Ceiling: none,
			Target: "informational: > 10 % led to the change", Verdict: report.NA,
			Latency: &inTxLat, CeilingLatency: &noneLat,
			Detail: fmt.Sprintf("costs %.1f %%", 100*(1-inTx/none)),
		},
		report.Row{
			Name: "pgbench + a NOTIFY every 2 ms after commits (the design now)", Value: after, Unit: "tx/s",
			CeilingName: "the same without NOTIFY", Ceiling: none,
			Target: "cost ≤ 10 % (ratio ≥ 0.90)", Verdict: report.Check(after >= 0.9*none),
			Latency: &afterLat, CeilingLatency: &noneLat,
			Detail: fmt.Sprintf("costs %.1f %%; %s NOTIFY/s", 100*(1-after/none), report.Num(notifies)),
		},
	)
	per := "Rates per round (tx/s):"
	for r := range rounds {
		per += fmt.Sprintf(" round %d: %s none, %s in the transaction, %s after commit;", r+1,
			report.Num(vs[0].runs[r].Rate()), report.Num(vs[1].runs[r].Rate()), report.Num(vs[2].runs[r].Rate()))
	}
	sc.Notes = append(sc.Notes, per[:len(per)-1]+". Latency columns show the last round of each variant.")
	return nil
}

func meanRate(rs []pgbenchResult) float64 {
	var sum float64
	for _, r := range rs {
		sum += r.Rate()
	}
	return sum / float64(len(rs))
}

func last(rs []pgbenchResult) pgbenchResult { return rs[len(rs)-1] }
