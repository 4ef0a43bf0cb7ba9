// Package config reads settings from ECS_* environment variables. Each package that
// owns settings declares them with defaults and a validate step; this package only
// parses, collecting every bad value so a misconfigured process reports them all
// at once and starts nothing.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every variable name.
const Prefix = "ECS_"

// Env reads variables through a lookup function (os.LookupEnv by default, a map
// in tests) and remembers parse errors.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{lookup: os.LookupEnv} }

// FromMap reads m, for tests.
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) get(name string) (string, bool) {
	v, ok := e.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return strings.TrimSpace(v), true
}

// String returns the variable or def.
func (e *Env) String(name, def string) string {
	if v, ok := e.get(name); ok {
		return v
	}
	return def
}

// List returns a comma-separated variable as a list without empty items, or def.
func (e *Env) List(name string, def []string) []string {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Prefixes returns a comma-separated list of CIDR networks ("10.0.0.0/8,
// fd00::/8"), each masked to its network address, or def. A bad item is
// recorded as an error naming the variable, and def is returned.
func (e *Env) Prefixes(name string, def []netip.Prefix) []netip.Prefix {
	items := e.List(name, nil)
	if items == nil {
		return def
	}
	out := make([]netip.Prefix, 0, len(items))
	for _, item := range items {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not a CIDR network (e.g. 10.0.0.0/8 or fd00::/8)", name, item))
			return def
		}
		out = append(out, p.Masked())
	}
	return out
}

// Int returns the variable as an integer, or def.
func (e *Env) Int(name string, def int) int {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not an integer", name, v))
		return def
	}
	return n
}

// Float returns the variable as a number, or def.
func (e *Env) Float(name string, def float64) float64 {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a number", name, v))
		return def
	}
	return n
}

// Duration returns the variable as a Go duration ("500ms", "5s", "2h"), or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a duration (e.g. 500ms, 5s)", name, v))
		return def
	}
	return d
}

// Durations returns a comma-separated list of Go durations ("5s,5m,30m"), or
// def. A bad item is recorded as an error naming the variable, and def is
// returned.
func (e *Env) Durations(name string, def []time.Duration) []time.Duration {
	items := e.List(name, nil)
	if items == nil {
		return def
	}
	out := make([]time.Duration, 0, len(items))
	for _, item := range items {
		d, err := time.ParseDuration(item)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not a duration (e.g. 5s, 5m, 2h)", name, item))
			return def
		}
		out = append(out, d)
	}
	return out
}

// Err joins every parse error seen so far.
func (e *Env) Err() error { return errors.Join(e.errs...) }
