package db

import (
	"fmt"
	"reflect"
	"strings"
)

// MustLoadQueries fills the string fields of dst (a pointer to a struct) from a
// .sql file of named queries, so each package keeps its SQL in one file next to
// the code that owns it. A query starts at a line "-- name: <name>"; a field takes
// the query named by its `sql:"<name>"` tag. It panics when a field has no query or
// a query no field: a typo fails every test at package init, not in production.
func MustLoadQueries(file string, dst any) {
	if err := loadQueries(file, dst); err != nil {
		panic(err)
	}
}

func loadQueries(file string, dst any) error {
	queries := map[string]string{}
	var name string
	var body strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		if _, dup := queries[name]; dup {
			return fmt.Errorf("db: query %q defined twice", name)
		}
		queries[name] = strings.TrimSpace(body.String())
		body.Reset()
		return nil
	}
	for _, line := range strings.Split(file, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			if err := flush(); err != nil {
				return err
			}
			name = strings.TrimSpace(rest)
			continue
		}
		if name != "" {
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := flush(); err != nil {
		return err
	}

	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("db: MustLoadQueries needs a pointer to a struct, got %T", dst)
	}
	v = v.Elem()
	used := map[string]bool{}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		tag := f.Tag.Get("sql")
		if tag == "" {
			continue
		}
		q, ok := queries[tag]
		if !ok || q == "" {
			return fmt.Errorf("db: no query named %q for field %s", tag, f.Name)
		}
		v.Field(i).SetString(q)
		used[tag] = true
	}
	for n := range queries {
		if !used[n] {
			return fmt.Errorf("db: query %q has no field", n)
		}
	}
	return nil
}
