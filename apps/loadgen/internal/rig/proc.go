package rig

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one child process: a role of the platform or the embedded broker.
type Proc struct {
	Name string
	// HTTPAddr serves the role's /readyz and /metrics (and the API);
	// PprofAddr serves net/http/pprof. Both are loopback host:port.
	HTTPAddr  string
	PprofAddr string
	// Started is when the process was spawned.
	Started time.Time

	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// spawn starts exe with env; its output goes to logPath. The child gets
// SIGKILL if the load generator dies, so no process outlives a crashed run.
func spawn(name, exe string, env []string, logPath string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Started: time.Now(), cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Usage reads the child's CPU time and memory from /proc.
func (p *Proc) Usage() (Usage, error) { return ReadUsage(p.PID()) }

// exited reports whether the process has ended.
func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls check until it succeeds, the process exits or ctx ends.
func (p *Proc) waitReady(ctx context.Context, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%v): %s", p.Name, p.waitErr, p.LogTail(5))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v: %s", p.Name, last, p.LogTail(5))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits; when ctx ends first it kills the process.
func (p *Proc) stop(ctx context.Context) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop in time; killed", p.Name)
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		return fmt.Errorf("%s: %w", p.Name, p.waitErr)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s exited with %v: %s", p.Name, p.waitErr, p.LogTail(3))
	}
	return nil
}

// LogTail returns the last n lines of the child's output on one line.
func (p *Proc) LogTail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
			if len(lines) > n {
				lines = lines[1:]
			}
		}
	}
	if len(lines) == 0 {
		return "(log empty)"
	}
	return strings.Join(lines, " | ")
}

// Metric reads one unlabelled counter or gauge from the role's /metrics.
func (p *Proc) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", p.Name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s metrics: %w", p.Name, err)
	}
	return 0, fmt.Errorf("%s metrics: no %s", p.Name, name)
}

// httpReady is a readiness check on GET /readyz.
func httpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	}
}

// tcpReady is a readiness check that dials addr.
func tcpReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
