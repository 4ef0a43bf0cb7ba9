package scenario

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
)

// pgbenchScript is the API's single-event write (outbox/queries.sql:
// check_event_type, claim_idempotency_key, next_key_seq, publish) as a pgbench
// script. Like outbox.Store.publish it sends the four statements in one
// pipeline, which is one implicit transaction and one round trip; with
// -M prepared each statement is prepared once per connection, as pgx does.
// With notify, the last statement also calls pg_notify, as the API did before
// its wake-ups moved out of the transaction (outbox/wake.go).
//
// Values are built from :n, a per-client counter, :client_id, and two values
// set per run: :run (a run number) and :base (the Unix time in ms at the
// start). The event id is time-ordered like the API's UUIDv7 (its first 48
// bits are base + n, an increasing time-like value), so the primary key index
// sees the same insertion pattern; run and client make ids and keys unique
// across runs. Every literal colon is followed by a quote: pgbench would take
// ":42" for a variable.
func pgbenchScript(typ string, version int, notify bool) string {
	const (
		id   = `(lpad(to_hex(:base::bigint + :n::bigint), 12, '0') || '7000' || '8' || lpad(to_hex(:run::bigint * 1000 + :client_id::bigint), 15, '0'))::uuid`
		idem = `('pgb-i-' || :run::text || '-' || :client_id::text || '-' || :n::text)`
		key  = `('pgb-o-' || :run::text || '-' || :client_id::text || '-' || :n::text)`
		data = `('{"order_id":' || :n::text || ',"amount":' || '42.5' || ',"currency":"EUR","customer":"c-' || (:n::bigint % 1000)::text || '","items":' || '3' || '}')`
	)
	wake := `pg_notify('ecs_outbox', '')`
	if !notify {
		wake = `NULL::void`
	}
	r := strings.NewReplacer("{id}", id, "{idem}", idem, "{key}", key, "{data}", data, "{type}", "'"+typ+"'",
		"{version}", strconv.Itoa(version), "{wake}", wake)
	return r.Replace(`\set n :n + 1
\startpipeline
SELECT ecs_check_event_type({type}, {version});
INSERT INTO idempotency_keys (key, request_hash, event_id)
VALUES ({idem}, sha256(convert_to({idem}, 'UTF8')), {id})
ON CONFLICT (key) DO NOTHING;
INSERT INTO key_sequences (key, seq)
SELECT {key}, 1
WHERE {idem} IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys WHERE key = {idem} AND event_id = {id})
ON CONFLICT (key) DO UPDATE SET seq = key_sequences.seq + 1;
WITH e AS (
    INSERT INTO events (id, type, key, key_seq, data)
    SELECT {id}, {type}, {key}, (SELECT seq FROM key_sequences WHERE key = {key}), {data}::json
    WHERE {idem} IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys WHERE key = {idem} AND event_id = {id})
    RETURNING id, created_at, key_seq
), o AS (
    INSERT INTO outbox (event_id) SELECT id FROM e
)
SELECT created_at, key_seq, {wake} FROM e;
\endpipeline
`)
}

// notifyScript is the most the API's waker sends (outbox/queries.sql: notify;
// outbox/wake.go: at most one NOTIFY every notifyGap, 2ms).
const notifyScript = "SELECT pg_notify('ecs_outbox', '');\n\\sleep 2 ms\n"

// pgbenchResult is one pgbench run.
type pgbenchResult struct {
	load.Result
	// CPU is pgbench's own CPU time.
	CPU time.Duration
	// CompanionTPS is the rate of the companion script, if one ran.
	CompanionTPS float64
}

// runPgbench runs script at clients connections for warm+window and measures
// the transactions that completed inside the window, from pgbench's
// per-transaction log. A companion script, when given, runs alongside on one
// more connection for the same time.
func (e *Env) runPgbench(ctx context.Context, name, script string, clients int, companion string) (pgbenchResult, error) {
	dir, err := os.MkdirTemp(e.Rig.Dir(), "pgbench-")
	if err != nil {
		return pgbenchResult{}, err
	}
	defer os.RemoveAll(dir)
	total := e.Cfg.Warm + e.Cfg.Window
	secs := strconv.Itoa(int(math.Ceil(total.Seconds())) + 1) // + connection set-up
	prefix := filepath.Join(dir, "log")
	cmd, out, err := e.pgbench(ctx, dir, name, script, "-c", strconv.Itoa(clients), "-j", "2", "-T", secs, "-l", "--log-prefix="+prefix)
	if err != nil {
		return pgbenchResult{}, err
	}
	var side *exec.Cmd
	var sideOut *bytes.Buffer
	if companion != "" {
		if side, sideOut, err = e.pgbench(ctx, dir, name+"-companion", companion, "-c", "1", "-T", secs); err != nil {
			return pgbenchResult{}, err
		}
	}
	if err := cmd.Start(); err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench: %w", err)
	}
	if side != nil {
		if err := side.Start(); err != nil {
			_ = cmd.Wait()
			return pgbenchResult{}, fmt.Errorf("pgbench: %w", err)
		}
	}
	err = cmd.Wait()
	if side != nil {
		if serr := side.Wait(); serr != nil && err == nil {
			err, out = serr, sideOut
		}
	}
	if err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench: %w: %s", err, lastLines(out.String(), 3))
	}
	for _, o := range []*bytes.Buffer{out, sideOut} {
		if o == nil {
			continue
		}
		if s := o.String(); strings.Contains(s, "aborted") || !strings.Contains(s, "number of failed transactions: 0 ") {
			return pgbenchResult{}, fmt.Errorf("pgbench had failures: %s", lastLines(s, 4))
		}
	}
	res, err := readPgbenchLogs(prefix, e.Cfg.Warm, e.Cfg.Window)
	if err != nil {
		return pgbenchResult{}, err
	}
	r := pgbenchResult{Result: res}
	if st := cmd.ProcessState; st != nil {
		r.CPU = st.UserTime() + st.SystemTime()
	}
	if sideOut != nil {
		r.CompanionTPS = parseTPS(sideOut.String())
	}
	return r, nil
}

// pgbench prepares a pgbench command running script (written to dir) with
// prepared statements against the rig's database.
func (e *Env) pgbench(ctx context.Context, dir, name, script string, args ...string) (*exec.Cmd, *bytes.Buffer, error) {
	file := filepath.Join(dir, name+".sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return nil, nil, err
	}
	e.pgbenchRuns++
	args = append([]string{"-n", "-M", "prepared", "-f", file, "-D", "n=0",
		"-D", "run=" + strconv.Itoa(e.pgbenchRuns), "-D", "base=" + strconv.FormatInt(time.Now().UnixMilli(), 10)}, args...)
	cmd := exec.CommandContext(ctx, "pgbench", append(args, e.Rig.DBURL)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out, nil
}

// parseTPS reads "tps = 123.4 (without initial connection time)".
func parseTPS(out string) float64 {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "tps = "); ok {
			f, _, _ := strings.Cut(v, " ")
			tps, _ := strconv.ParseFloat(f, 64)
			return tps
		}
	}
	return 0
}

// readPgbenchLogs reads "client_id transaction_no time script_no time_epoch
// time_us" lines (time: latency in µs; time_epoch.time_us: completion) and
// counts the transactions that completed between warm and warm+window after
// the first one started.
func readPgbenchLogs(prefix string, warm, window time.Duration) (load.Result, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil || len(files) == 0 {
		return load.Result{}, fmt.Errorf("pgbench wrote no transaction log (%v)", err)
	}
	type tx struct{ end, lat int64 } // µs
	var txs []tx
	start := int64(math.MaxInt64)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return load.Result{}, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 6 {
				continue
			}
			lat, _ := strconv.ParseInt(fl[2], 10, 64)
			sec, _ := strconv.ParseInt(fl[4], 10, 64)
			us, _ := strconv.ParseInt(fl[5], 10, 64)
			t := tx{end: sec*1e6 + us, lat: lat}
			start = min(start, t.end-t.lat)
			txs = append(txs, t)
		}
		fh.Close()
	}
	from := start + warm.Microseconds()
	to := from + window.Microseconds()
	res := load.Result{Window: window}
	var lat []time.Duration
	for _, t := range txs {
		if t.end >= from && t.end <= to {
			res.Ops++
			lat = append(lat, time.Duration(t.lat)*time.Microsecond)
		}
	}
	res.Items = res.Ops
	res.Latency = load.Summarize(lat)
	return res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// pgbenchVersion is "pgbench --version" without the program name.
func pgbenchVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "pgbench", "--version").Output()
	if err != nil {
		return "not found (" + err.Error() + ")"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "pgbench"))
}
