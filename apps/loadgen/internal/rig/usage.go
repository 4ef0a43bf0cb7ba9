package rig

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports for this tool.
const clockTick = 10 * time.Millisecond

// Usage is what one process has used so far.
type Usage struct {
	// CPU is user plus system time of all threads (10 ms resolution).
	CPU time.Duration
	// RSS is the resident set now; PeakRSS the high-water mark (VmHWM).
	RSS, PeakRSS int64
}

// ReadUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadUsage(pid int) (Usage, error) {
	cpu, _, err := statCPU(pid)
	if err != nil {
		return Usage{}, err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	u := Usage{CPU: cpu}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.RSS = kib(v)
		} else if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			u.PeakRSS = kib(v)
		}
	}
	return u, nil
}

// TreeCPU is the CPU time of pid and its direct children, e.g. the
// postmaster and its backends: live children from their own stat, children
// that exited (and were waited for) from pid's cutime and cstime.
func TreeCPU(pid int) (time.Duration, error) {
	total, _, err := statCPU(pid)
	if err != nil {
		return 0, err
	}
	reaped, err := reapedCPU(pid)
	if err != nil {
		return 0, err
	}
	total += reaped
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		cpu, ppid, err := statCPU(child)
		if err == nil && ppid == pid {
			total += cpu
		}
	}
	return total, nil
}

// statCPU returns utime+stime and the parent pid of a process.
func statCPU(pid int) (time.Duration, int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick, ppid, nil
}

// reapedCPU is cutime+cstime: the CPU time of pid's children it waited for.
func reapedCPU(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	ct, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(ct+cs) * clockTick, nil
}

// statFields returns the fields of /proc/<pid>/stat from field 3 (state) on:
// ppid is f[1], utime f[11], stime f[12], cutime f[13], cstime f[14].
func statFields(pid int) ([]string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("stat of %d: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("stat of %d: too few fields", pid)
	}
	return f, nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n << 10
}

// SelfUsage is the load generator's own usage.
func SelfUsage() (Usage, error) { return ReadUsage(os.Getpid()) }
