package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// testDataDir returns a not-yet-existing data dir path under t.TempDir().
// t.TempDir and its parent are created 0700; when the tests run as root the
// server runs as the postgres user, which must be able to traverse them.
func testDataDir(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chmod(dir, 0o755))
		require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	}
	return filepath.Join(dir, name)
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func stop(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
}

func connect(t *testing.T, s *Server) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func queryInt(t *testing.T, c *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, c.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

func TestStartRestartStop(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: testDataDir(t, "pg"), Fast: true}

	t0 := time.Now()
	s := start(t, cfg)
	t.Logf("cold start (initdb + start): %v", time.Since(t0))
	require.Regexp(t, `^postgres://postgres@127\.0\.0\.1:\d+/ecs\?sslmode=disable$`, s.URL())
	require.FileExists(t, filepath.Join(cfg.DataDir, "server.log"))

	c := connect(t, s)
	require.Equal(t, 1, queryInt(t, c, "select 1"))
	require.Equal(t, 200, queryInt(t, c, "select current_setting('max_connections')::int"))
	_, err := c.Exec(context.Background(), "create table kept (id int); insert into kept values (42)")
	require.NoError(t, err)
	require.NoError(t, c.Close(context.Background()))

	stop(t, s)
	stop(t, s) // idempotent
	require.NoFileExists(t, filepath.Join(cfg.DataDir, "postmaster.pid"))

	t0 = time.Now()
	s2 := start(t, cfg)
	t.Logf("warm start (existing cluster): %v", time.Since(t0))
	c2 := connect(t, s2)
	require.Equal(t, 42, queryInt(t, c2, "select id from kept"))
	require.NoError(t, c2.Close(context.Background()))
	stop(t, s2)
	stop(t, s2)
}

func TestSettingsAndLongPath(t *testing.T) {
	t.Parallel()
	// Longer than the unix socket path limit allows: a temp socket dir is used.
	dir := testDataDir(t, strings.Repeat("d", 110))
	s := start(t, Config{
		DataDir:  dir,
		Database: "other db",
		Fast:     true,
		Settings: map[string]string{"max_connections": "30", "work_mem": "8MB"},
	})
	require.NotEmpty(t, s.tmpSock)
	require.FileExists(t, filepath.Join(s.tmpSock, fmt.Sprintf(".s.PGSQL.%d", s.port)))
	require.Contains(t, s.URL(), "/other%20db?")
	c := connect(t, s)
	require.Equal(t, 30, queryInt(t, c, "select current_setting('max_connections')::int"))
	require.Equal(t, 0, queryInt(t, c, "select case when current_setting('fsync') = 'off' then 0 else 1 end"))
	var db string
	require.NoError(t, c.QueryRow(context.Background(), "select current_database()").Scan(&db))
	require.Equal(t, "other db", db)
	require.NoError(t, c.Close(context.Background()))
	stop(t, s)
	require.NoDirExists(t, s.tmpSock)
}

func TestStalePostmasterPid(t *testing.T) {
	t.Parallel()
	// synchronous_commit=on: with Fast's async commit a kill -9 may lose the
	// last commits, which this test relies on.
	cfg := Config{DataDir: testDataDir(t, "pg"), Fast: true, Settings: map[string]string{"synchronous_commit": "on"}}
	s := start(t, cfg)
	c := connect(t, s)
	_, err := c.Exec(context.Background(), "create table kept (id int); insert into kept values (7)")
	require.NoError(t, err)
	require.NoError(t, c.Close(context.Background()))

	// A second Start on a data dir that is being served must fail clearly.
	_, err = Start(context.Background(), cfg)
	require.ErrorContains(t, err, "in use by a running postgres")

	// Hard-kill the postmaster (like kill -9 of a dev app): postmaster.pid
	// stays behind with a dead pid and the next Start must recover.
	require.NoError(t, s.cmd.Process.Kill())
	<-s.done
	require.FileExists(t, filepath.Join(cfg.DataDir, "postmaster.pid"))
	require.NoError(t, s.Stop(context.Background()), "Stop after the process died")

	s2 := start(t, cfg)
	c2 := connect(t, s2)
	require.Equal(t, 7, queryInt(t, c2, "select id from kept"))
	require.NoError(t, c2.Close(context.Background()))
	stop(t, s2)

	// Synthetic stale lock files: a pid that has exited, and a live pid that
	// is not postgres (pid reuse after a reboot/container restart).
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	for _, pid := range []int{dead.Process.Pid, os.Getpid()} {
		lock := fmt.Sprintf("%d\n%s\n1700000000\n5432\n%s\n127.0.0.1\n  1234  5678\nready\n", pid, cfg.DataDir, cfg.DataDir)
		require.NoError(t, os.WriteFile(filepath.Join(cfg.DataDir, "postmaster.pid"), []byte(lock), 0o600))
		s3 := start(t, cfg)
		c3 := connect(t, s3)
		require.Equal(t, 7, queryInt(t, c3, "select id from kept"))
		require.NoError(t, c3.Close(context.Background()))
		stop(t, s3)
	}
}

func TestBadDataDir(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Config{})
	require.ErrorContains(t, err, "DataDir is required")

	dir := testDataDir(t, "junk")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o600))
	_, err = Start(context.Background(), Config{DataDir: dir})
	require.ErrorContains(t, err, "not empty but holds no cluster")
}

func TestServerArgs(t *testing.T) {
	t.Parallel()
	args := serverArgs(launchArgs{
		dataDir: "/d", sockDir: "/s", port: 5555,
		cfg: Config{Fast: true, Settings: map[string]string{"listen_addresses": "*", "port": "1", "work_mem": "4MB"}},
	})
	require.Equal(t, []string{
		"-D", "/d", "-p", "5555",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200",
		"-c", "synchronous_commit=off",
		"-c", "unix_socket_directories=/s",
		"-c", "work_mem=4MB",
	}, args)
}
