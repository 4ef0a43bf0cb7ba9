package scenario

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReadPgbenchLogsCountsTheWindow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// client tx latency_us script epoch us: transactions end at 0.5 s steps
	// from t=1000 s; the first starts at 1000.4 s.
	var a, b strings.Builder
	for i := range 10 {
		end := 1000_500_000 + int64(i)*500_000
		line := strings.Join([]string{"0", "1", "100000", "0", itoa(end / 1_000_000), itoa(end % 1_000_000)}, " ") + "\n"
		if i%2 == 0 {
			a.WriteString(line)
		} else {
			b.WriteString(line)
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "log.123"), []byte(a.String()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "log.123.1"), []byte(b.String()), 0o644))
	// Window: 1 s after the first start (1001.4) to 2 s later (1003.4).
	res, err := readPgbenchLogs(filepath.Join(dir, "log"), time.Second, 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, 4, res.Items) // ends at 1001.5, 1002.0, 1002.5, 1003.0
	require.InDelta(t, 2.0, res.Rate(), 1e-9)
	require.Equal(t, 100*time.Millisecond, res.Latency.P99)
}

func TestPgbenchScriptHasNoStrayVariables(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{true, false} {
		s := pgbenchScript("bench.ingest", 3, notify)
		require.NotRegexp(t, `\{[a-z]+\}`, s, "a placeholder was left")
		require.Equal(t, notify, strings.Contains(s, "pg_notify"))
		// pgbench reads ":word" as a variable: only ours may appear.
		for i := 0; i < len(s)-1; i++ {
			if s[i] == ':' && s[i+1] != ':' && (i == 0 || s[i-1] != ':') && isWord(s[i+1]) {
				j := i + 1
				for j < len(s) && isWord(s[j]) {
					j++
				}
				require.Contains(t, []string{"n", "client_id", "run", "base"}, s[i+1:j], "variable at %d", i)
			}
		}
	}
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
