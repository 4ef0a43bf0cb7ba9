// Package filter evaluates subscription filters: CEL (Common Expression
// Language, google/cel-go) expressions over an event's data, type and key that
// decide whether a subscription gets a delivery. CEL is side-effect free,
// terminates, and its cost can be bounded, which makes it safe to run
// user-written expressions on the delivery path.
package filter

import (
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
)

// MaxLength bounds a filter's source.
const MaxLength = 2048

// costLimit bounds one evaluation, so a filter cannot stall a worker.
const costLimit = 100_000

var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("data", cel.DynType),
		cel.Variable("type", cel.StringType),
		cel.Variable("key", cel.StringType),
	)
	if err != nil {
		panic(err)
	}
	return e
}()

// Filter is a compiled filter.
type Filter struct {
	prg cel.Program
}

// Compile checks expr: it must parse, type-check and yield a bool.
func Compile(expr string) (*Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("filter is empty")
	}
	if len(expr) > MaxLength {
		return nil, fmt.Errorf("filter is longer than %d characters", MaxLength)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("filter does not compile: %w", iss.Err())
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("filter must yield a bool, not %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	return &Filter{prg: prg}, nil
}

// Match evaluates f for one event. An evaluation error (a missing field, too
// costly, not a bool) is returned with false: the caller creates no delivery.
func (f *Filter) Match(typ, key string, data any) (bool, error) {
	out, _, err := f.prg.Eval(map[string]any{"data": data, "type": typ, "key": key})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("filter yielded %v, not a bool", out.Value())
	}
	return b, nil
}
