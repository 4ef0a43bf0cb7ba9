// Package localpg starts a throwaway or persistent local PostgreSQL server
// from the PostgreSQL server binaries installed on the machine (initdb and
// postgres on PATH, or under /usr/lib/postgresql/<ver>/bin).
//
// It is meant for tests and for running the service on a developer machine
// without Docker: Start initialises the cluster on first use, starts the
// postmaster as a child process listening on 127.0.0.1 only (trust auth),
// waits until it accepts connections and creates the application database.
//
// postgres refuses to run as root, so when the calling process is root the
// server (and initdb) run as the "postgres" OS user, and Start chowns the
// data directory to that user.
package localpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// defaultDatabase is created when Config.Database is empty.
	defaultDatabase = "ecs"
	// superuser is the bootstrap superuser initdb creates (-U postgres) and
	// the user in URL(); auth is trust, so no password is needed.
	superuser = "postgres"
	// startupCap bounds how long Start waits for the server to accept
	// connections, even if the caller's ctx has no deadline. Crash recovery
	// after a hard kill is included in this wait.
	startupCap = 60 * time.Second
	// portAttempts is how many ports Start tries when Config.Port is 0 and
	// the chosen port was taken between picking and binding.
	portAttempts = 3
	// logFileName is the server's stdout/stderr, inside the data dir.
	logFileName = "server.log"
	// maxSocketPath is the usable length of sun_path (108 bytes incl. NUL).
	maxSocketPath = 107
)

// Config configures Start. Only DataDir is required.
type Config struct {
	// DataDir holds the cluster. Required. If it already holds a cluster
	// (PG_VERSION exists) it is reused, so a restart keeps data; otherwise
	// it is created (mode 0700) and initialised with initdb. Missing parent
	// directories are created with mode 0755 so the server user can reach
	// the data dir when running as root.
	DataDir string
	// Port on 127.0.0.1. 0 (default) picks a free port, so several servers
	// (parallel tests, a dev app next to a system postgres) never collide;
	// set it when clients need a stable address across restarts.
	Port int
	// Database to create if missing (default "ecs", the service's database
	// name, so URL() is directly usable by the service).
	Database string
	// Fast turns off fsync/synchronous_commit/full_page_writes (and makes
	// initdb skip fsync): for tests only (default false), because an OS
	// crash can then corrupt the cluster, and with synchronous_commit=off
	// even a kill -9 of the server loses the last few hundred ms of commits.
	// It makes write-heavy tests much faster. Entries in Settings override
	// the individual Fast settings.
	Fast bool
	// Logger for progress (default slog.Default(), so output follows the
	// application's logging setup). The server's own output goes to
	// DataDir/server.log, not to this logger.
	Logger *slog.Logger
	// Settings are extra server settings passed as -c name=value (e.g.
	// "shared_buffers": "64MB"). Default max_connections=200, because tests
	// and dev apps open many pools against one server and PostgreSQL's
	// default of 100 is easy to exhaust; a "max_connections" key here
	// overrides it. listen_addresses, port and unix_socket_directories are
	// controlled by Start and cannot be overridden.
	Settings map[string]string
}

// Server is a running postgres started by Start. Call Stop when done.
type Server struct {
	dataDir string
	port    int
	db      string
	log     *slog.Logger
	cmd     *exec.Cmd
	logFile *os.File
	tmpSock string // socket dir to remove after exit ("" if DataDir is used)

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // cmd.Wait result, valid after done is closed

	mu       sync.Mutex
	stopping bool
	stopped  bool
	stopErr  error
}

// runAs describes the OS user the server runs as. cred is nil when it is the
// current user.
type runAs struct {
	name string
	uid  int
	gid  int
	cred *syscall.Credential
}

// Start initialises DataDir if needed, starts postgres on 127.0.0.1 and waits
// until it accepts connections and Database exists. The wait is bounded by
// ctx and by a 60 s cap. The returned Server must be stopped with Stop; if
// this process dies without calling Stop the server receives SIGTERM
// (Pdeathsig) and shuts down.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("localpg: Config.DataDir is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("localpg: invalid port %d", cfg.Port)
	}
	if cfg.Database == "" {
		cfg.Database = defaultDatabase
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "localpg")

	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("localpg: data dir: %w", err)
	}
	dataDir = filepath.Clean(dataDir)

	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, startupCap)
	defer cancel()

	begin := time.Now()
	fresh, err := prepareDataDir(dataDir, as)
	if err != nil {
		return nil, err
	}
	if fresh {
		t := time.Now()
		if err := runInitdb(ctx, bins.initdb, dataDir, as, cfg.Fast); err != nil {
			return nil, err
		}
		log.Info("initialised cluster", "data_dir", dataDir, "user", as.name, "took", time.Since(t).Round(time.Millisecond))
	}
	// Resolve symlinks once the dir exists so it matches /proc/<pid>/cwd.
	if real, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = real
	}
	if err := clearStaleLock(ctx, dataDir, log); err != nil {
		return nil, err
	}

	sockDir, tmpSock, err := socketDir(dataDir, as)
	if err != nil {
		return nil, err
	}
	cleanupSock := func() {
		if tmpSock != "" {
			_ = os.RemoveAll(tmpSock)
		}
	}

	port := cfg.Port
	var lastErr error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		if cfg.Port == 0 {
			if port, err = freePort(); err != nil {
				cleanupSock()
				return nil, err
			}
		}
		s, inUse, err := launch(ctx, launchArgs{
			bin: bins.postgres, dataDir: dataDir, port: port, sockDir: sockDir,
			tmpSock: tmpSock, as: as, cfg: cfg, log: log,
		})
		if err == nil {
			log.Info("postgres ready", "url", s.URL(), "fresh", fresh, "took", time.Since(begin).Round(time.Millisecond))
			return s, nil
		}
		lastErr = err
		if !inUse || cfg.Port != 0 || ctx.Err() != nil {
			break
		}
		log.Warn("port taken, retrying on another port", "port", port, "attempt", attempt)
	}
	cleanupSock()
	return nil, lastErr
}

// URL returns the connection URL for the configured database, e.g.
// postgres://postgres@127.0.0.1:54321/ecs?sslmode=disable.
func (s *Server) URL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + s.db, // escaped by String, e.g. "my db" -> my%20db
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop shuts the server down with a fast shutdown (SIGINT: active
// connections are terminated, a checkpoint is written) and waits for the
// process to exit. If ctx ends first it escalates to an immediate shutdown
// (SIGQUIT, crash recovery on next start) and then SIGKILL. Stop is
// idempotent and safe for concurrent use: later calls return the first
// call's result.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		err := s.stopErr
		s.mu.Unlock()
		return err
	}
	s.stopping = true
	s.mu.Unlock()

	err := s.stop(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped, s.stopErr = true, err
	}
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	var err error
	signal(s.cmd, syscall.SIGINT)
	select {
	case <-s.done:
	case <-ctx.Done():
		s.log.Warn("fast shutdown timed out, forcing immediate shutdown", "data_dir", s.dataDir)
		signal(s.cmd, syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			signal(s.cmd, syscall.SIGKILL)
			<-s.done
		}
		err = fmt.Errorf("localpg: stop: fast shutdown did not finish: %w", ctx.Err())
	}
	s.cleanup()
	if err == nil && s.waitErr != nil && !signalled(s.waitErr) {
		err = fmt.Errorf("localpg: server exited with error: %w (log: %s)", s.waitErr, logTail(s.logFile.Name(), 0))
	}
	if err == nil {
		s.log.Info("postgres stopped", "data_dir", s.dataDir)
	}
	return err
}

func (s *Server) cleanup() {
	_ = s.logFile.Close()
	if s.tmpSock != "" {
		_ = os.RemoveAll(s.tmpSock)
	}
}

func signal(cmd *exec.Cmd, sig syscall.Signal) {
	// Errors mean the process is already gone (os.ErrProcessDone).
	_ = cmd.Process.Signal(sig)
}

// signalled reports whether the process was ended by a signal (ours, during
// Stop escalation) rather than exiting with a failure code.
func signalled(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return ws.Signaled()
		}
	}
	return false
}

type binaries struct{ initdb, postgres string }

// findBinaries locates postgres on PATH (falling back to the newest
// /usr/lib/postgresql/*/bin) and takes initdb from the same directory so the
// two always have the same major version.
func findBinaries() (binaries, error) {
	var dirs []string
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool { return pgDirVersion(versioned[i]) > pgDirVersion(versioned[j]) })
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		b := binaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, errors.New("localpg: postgres/initdb not found on PATH or in /usr/lib/postgresql/*/bin; install the PostgreSQL server package")
}

func pgDirVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// serverUser returns the user the server runs as: the current user, or the
// "postgres" OS user when we are root (postgres refuses to run as root).
func serverUser() (runAs, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return runAs{name: name, uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("localpg: running as root, but postgres refuses to run as root and the \"postgres\" OS user is missing: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return runAs{}, fmt.Errorf("localpg: bad uid/gid for user postgres: %w", err)
	}
	return runAs{
		name: u.Username, uid: uid, gid: gid,
		// Groups empty: drop root's supplementary groups.
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}, nil
}

func (a runAs) sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig: if this process dies (even kill -9) the kernel sends the
	// server SIGTERM so it does not outlive us. Setpgid: a Ctrl-C in a
	// terminal signals the whole foreground process group; the server must not
	// get it, or it shuts down while our services are still stopping gracefully
	// and writing to it. We stop it last, with Stop.
	return &syscall.SysProcAttr{Credential: a.cred, Pdeathsig: syscall.SIGTERM, Setpgid: true}
}

// prepareDataDir makes sure dataDir exists, is usable by the server user and
// reports whether it still needs initdb.
func prepareDataDir(dataDir string, as runAs) (fresh bool, err error) {
	if err := mkdirParents(filepath.Dir(dataDir)); err != nil {
		return false, err
	}
	if err := checkTraversable(filepath.Dir(dataDir), as); err != nil {
		return false, err
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return false, fmt.Errorf("localpg: create data dir: %w", err)
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return false, fmt.Errorf("localpg: data dir: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("localpg: data dir %s is not a directory", dataDir)
	}
	owner := int(fi.Sys().(*syscall.Stat_t).Uid)

	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		if owner != as.uid {
			return false, fmt.Errorf("localpg: data dir %s holds a cluster owned by uid %d but the server runs as %s (uid %d); chown -R it or use another dir", dataDir, owner, as.name, as.uid)
		}
		return false, nil
	}

	// Not initialised: initdb needs it empty (a crashed initdb leaves junk).
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return false, fmt.Errorf("localpg: read data dir: %w", err)
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("localpg: data dir %s is not empty but holds no cluster (no PG_VERSION); remove it or choose another dir", dataDir)
	}
	if owner != as.uid {
		if err := os.Chown(dataDir, as.uid, as.gid); err != nil {
			return false, fmt.Errorf("localpg: chown data dir to %s: %w", as.name, err)
		}
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return false, fmt.Errorf("localpg: chmod data dir: %w", err)
	}
	return true, nil
}

// mkdirParents creates dir and its missing parents with mode 0755 (ignoring
// umask) so another user can traverse them.
func mkdirParents(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirParents(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("localpg: create parent dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("localpg: chmod parent dir: %w", err)
	}
	return nil
}

// checkTraversable verifies that the server user can search every directory
// from / down to dir. Existing directories are never chmod'ed behind the
// caller's back; a clear error names the one to fix instead.
func checkTraversable(dir string, as runAs) error {
	if as.cred == nil {
		return nil // same user as us: if we got here, we can traverse it
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		ok := m&0o001 != 0 ||
			(int(st.Uid) == as.uid && m&0o100 != 0) ||
			(int(st.Gid) == as.gid && m&0o010 != 0)
		if !ok {
			return fmt.Errorf("localpg: directory %s (mode %v) is not traversable by the server user %s; chmod o+x it or put DataDir elsewhere", d, m, as.name)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func runInitdb(ctx context.Context, initdb, dataDir string, as runAs, fast bool) error {
	args := []string{"-D", dataDir, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C"}
	if fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, initdb, args...)
	cmd.Dir = filepath.Dir(dataDir) // our cwd may not be accessible to the server user
	cmd.Env = serverEnv()
	cmd.SysProcAttr = as.sysProcAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// Leave an empty dir behind so the next Start can retry initdb.
		cleanDir(dataDir)
		return fmt.Errorf("localpg: initdb failed: %w: %s", err, lastLines(out.String(), 5))
	}
	return nil
}

func cleanDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// serverEnv is our environment minus libpq/postgres variables that could
// change initdb or server behaviour.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// clearStaleLock removes DataDir/postmaster.pid left behind by a killed
// server, so a hard-killed dev app restarts cleanly. It refuses (with a clear
// error) if a postgres is still running in the data dir.
func clearStaleLock(ctx context.Context, dataDir string, log *slog.Logger) error {
	lockPath := filepath.Join(dataDir, "postmaster.pid")
	raw, err := os.ReadFile(lockPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localpg: read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(raw), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	lockPort := ""
	if len(lines) > 3 {
		lockPort = strings.TrimSpace(lines[3])
	}

	if pid > 0 && pid != os.Getpid() && processAlive(pid) && isPostgres(pid) {
		cwd, err := procCwd(pid)
		if err != nil || cwd == dataDir {
			return fmt.Errorf("localpg: data dir %s is in use by a running postgres (pid %d, port %s); stop it first", dataDir, pid, lockPort)
		}
	}
	// The postmaster is gone (or its pid was reused by an unrelated
	// process). Its children exit on their own once they notice; wait
	// briefly for them, because starting a new postmaster while old backends
	// still write to the data dir would corrupt it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := postgresProcsIn(dataDir)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("localpg: data dir %s is still used by leftover postgres processes %v; kill them first", dataDir, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(lockPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("localpg: remove stale postmaster.pid: %w", err)
	}
	// Stale socket lock files in the data dir (our usual socket dir) would
	// block a restart on the same port if their pid has been reused.
	if stale, _ := filepath.Glob(filepath.Join(dataDir, ".s.PGSQL.*")); len(stale) > 0 {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	log.Warn("removed stale postmaster.pid from a previous run", "data_dir", dataDir, "old_pid", pid)
	return nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isPostgres(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true // cannot tell (no /proc): assume the worst
	}
	name := strings.TrimSpace(string(comm))
	// Children rename themselves ("postgres: checkpointer"), but comm keeps
	// the executable name, truncated to 15 chars.
	return name == "postgres" || strings.HasPrefix(name, "postgres:")
}

func procCwd(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
}

// postgresProcsIn lists postgres processes whose working directory is
// dataDir (postmaster and all its children chdir there). Processes we may
// not inspect are skipped.
func postgresProcsIn(dataDir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cwd, err := procCwd(pid); err == nil && cwd == dataDir && isPostgres(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// socketDir returns the unix socket directory: the data dir when the socket
// path fits the 107-byte sun_path limit, otherwise a fresh short temp dir
// owned by the server user (tmp is that dir, to be removed after exit).
func socketDir(dataDir string, as runAs) (dir, tmp string, err error) {
	if len(dataDir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		return dataDir, "", nil
	}
	tmp, err = os.MkdirTemp("", "localpg-")
	if err != nil {
		return "", "", fmt.Errorf("localpg: socket dir: %w", err)
	}
	if err := os.Chown(tmp, as.uid, as.gid); err != nil {
		_ = os.RemoveAll(tmp)
		return "", "", fmt.Errorf("localpg: chown socket dir: %w", err)
	}
	return tmp, tmp, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type launchArgs struct {
	bin, dataDir, sockDir, tmpSock string
	port                           int
	as                             runAs
	cfg                            Config
	log                            *slog.Logger
}

// serverArgs builds the postgres command line. Settings are sorted so the
// command line is deterministic.
func serverArgs(a launchArgs) []string {
	settings := map[string]string{"max_connections": "200"}
	if a.cfg.Fast {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range a.cfg.Settings {
		settings[k] = v
	}
	settings["listen_addresses"] = "127.0.0.1"
	settings["unix_socket_directories"] = a.sockDir
	delete(settings, "port") // -p below wins

	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", a.dataDir, "-p", strconv.Itoa(a.port)}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// launch starts the postmaster once and waits until it serves connections.
// inUse reports that it failed because the port was taken.
func launch(ctx context.Context, a launchArgs) (s *Server, inUse bool, err error) {
	logPath := filepath.Join(a.dataDir, logFileName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("localpg: open server log: %w", err)
	}
	_ = logFile.Chown(a.as.uid, a.as.gid)
	var offset int64
	if fi, err := logFile.Stat(); err == nil {
		offset = fi.Size()
	}

	// Not CommandContext: ctx only bounds startup, the server outlives it.
	cmd := exec.Command(a.bin, serverArgs(a)...)
	cmd.Dir = a.dataDir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = a.as.sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, false, fmt.Errorf("localpg: start postgres: %w", err)
	}
	s = &Server{
		dataDir: a.dataDir, port: a.port, db: a.cfg.Database, log: a.log,
		cmd: cmd, logFile: logFile, tmpSock: a.tmpSock, done: make(chan struct{}),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
		s.mu.Lock()
		expected := s.stopping
		s.mu.Unlock()
		if !expected {
			s.log.Error("postgres exited unexpectedly", "err", s.waitErr, "log", logPath)
		}
	}()

	fail := func(err error) (*Server, bool, error) {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		signal(cmd, syscall.SIGQUIT)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			signal(cmd, syscall.SIGKILL)
			<-s.done
		}
		_ = logFile.Close()
		return nil, false, err
	}

	if err := waitReady(ctx, s); err != nil {
		select {
		case <-s.done:
			tail := logTail(logPath, offset)
			_ = logFile.Close()
			inUse := strings.Contains(tail, "already in use") || strings.Contains(tail, "could not create any TCP/IP sockets")
			return nil, inUse, fmt.Errorf("localpg: postgres exited during startup (%v): %s", s.waitErr, tail)
		default:
		}
		return fail(fmt.Errorf("localpg: postgres not ready: %w (log: %s)", err, logTail(logPath, offset)))
	}
	if err := createDatabase(ctx, s); err != nil {
		return fail(err)
	}
	return s, false, nil
}

// waitReady polls with pgx until the server accepts connections, the process
// exits, or ctx ends.
func waitReady(ctx context.Context, s *Server) error {
	url := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", superuser, s.port)
	var lastErr error
	for {
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-s.done:
			return errors.New("server process exited")
		case <-ctx.Done():
			return fmt.Errorf("%w; last connect error: %v", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func createDatabase(ctx context.Context, s *Server) error {
	url := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", superuser, s.port)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("localpg: connect to create database: %w", err)
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.db}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("localpg: create database %q: %w", s.db, err)
	}
	s.log.Info("created database", "database", s.db)
	return nil
}

// logTail returns the last lines written to the server log after offset,
// joined into one line.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no server log)"
	}
	defer f.Close()
	const maxTail = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > maxTail {
		offset = fi.Size() - maxTail
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(unreadable server log)"
	}
	b, _ := io.ReadAll(f)
	if t := lastLines(string(b), 5); t != "" {
		return t
	}
	return "(server log empty)"
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
