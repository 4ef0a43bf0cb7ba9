// Package db holds what every PostgreSQL-backed package shares: opening a pool,
// loading a package's named SQL queries, and classifying server errors by SQLSTATE.
package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolConfig tunes Open.
type PoolConfig struct {
	// URL is a libpq-style connection string or URL. Required.
	URL string
	// MaxConns caps the pool (default 10). The API needs roughly one per
	// concurrent request in flight; the worker one per batch writer.
	MaxConns int32
	// ApplicationName shows in pg_stat_activity (default "ecs").
	ApplicationName string
}

// Open connects a pool and checks that the server answers.
func Open(ctx context.Context, cfg PoolConfig) (*pgxpool.Pool, error) {
	if cfg.URL == "" {
		return nil, errors.New("db: database URL is empty")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("db: parse database URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	} else {
		pc.MaxConns = 10
	}
	name := cfg.ApplicationName
	if name == "" {
		name = "ecs"
	}
	pc.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("db: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: ping: %w", err)
	}
	return pool, nil
}

// SQLSTATE codes we act on.
const (
	CodeUniqueViolation     = "23505"
	CodeForeignKeyViolation = "23503"
	CodeCheckViolation      = "23514"
)

// IsCode reports whether err is a server error with the given SQLSTATE, and for
// constraint errors, optionally the given constraint name.
func IsCode(err error, code string, constraint ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		return false
	}
	if len(constraint) == 0 {
		return true
	}
	for _, c := range constraint {
		if pgErr.ConstraintName == c {
			return true
		}
	}
	return false
}

// IsNoRows reports whether err says a query returned no row.
func IsNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// Executor is what both a pool and a transaction offer; store methods take it so a
// caller can run them inside its own transaction.
type Executor interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
