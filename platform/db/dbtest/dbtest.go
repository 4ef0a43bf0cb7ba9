// Package dbtest gives tests a real PostgreSQL: Main starts one server per test
// binary (or uses ECS_TEST_DATABASE_URL) and checks for leaked goroutines; NewDB
// hands each test a fresh, migrated database of its own, cloned from a template so
// the migrations run once per binary.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/db/localpg"
	"github.com/eventconfigservice/ecs/schema"
)

// EnvURL names a server to use instead of starting one. Its user must be allowed
// to create databases.
const EnvURL = "ECS_TEST_DATABASE_URL"

// Set once by Main before any test runs.
var (
	baseURL  string
	template string
)

// Main runs the tests of a package that uses NewDB: start a server, run, stop it,
// then fail the binary if a goroutine leaked.
func Main(m *testing.M) {
	ignore := goleak.IgnoreCurrent()
	code := run(m)
	if code == 0 {
		if err := goleak.Find(ignore); err != nil {
			fmt.Fprintln(os.Stderr, "dbtest: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// run starts what the tests need, runs them, and stops it all again.
func run(m *testing.M) int {
	ctx := context.Background()
	baseURL = os.Getenv(EnvURL)
	if baseURL == "" {
		dir, err := os.MkdirTemp("", "ecs-test-pg-")
		if err == nil {
			err = os.Chmod(dir, 0o755) // the server may run as user postgres
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dbtest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		srv, err := localpg.Start(ctx, localpg.Config{
			DataDir: filepath.Join(dir, "data"), Database: "postgres", Fast: true,
			Logger:   slog.New(slog.DiscardHandler),
			Settings: map[string]string{"max_connections": "300"},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "dbtest: start PostgreSQL:", err)
			return 1
		}
		defer func() { _ = srv.Stop(context.Background()) }()
		baseURL = srv.URL()
	}
	template = "ecs_tpl_" + randomSuffix()
	if err := makeTemplate(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dbtest:", err)
		return 1
	}
	defer dropDatabase(context.Background(), template)

	return m.Run()
}

func makeTemplate(ctx context.Context) error {
	if err := exec(ctx, `CREATE DATABASE `+pgx.Identifier{template}.Sanitize()); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	if err := schema.MigrateURL(ctx, withDatabase(baseURL, template)); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	return nil
}

// NewDB returns a pool on a fresh migrated database, dropped when the test ends,
// and the database's URL for components that open their own connections.
func NewDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	name := "ecs_test_" + randomSuffix()
	var err error
	for range 50 { // CREATE DATABASE ... TEMPLATE fails while another clone copies it
		err = exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`,
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize()))
		if err == nil || !db.IsCode(err, "55006") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	dbURL := withDatabase(baseURL, name)
	pool, err := db.Open(ctx, db.PoolConfig{URL: dbURL, MaxConns: 20, ApplicationName: "ecs-test"})
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		dropDatabase(context.Background(), name)
	})
	return pool, dbURL
}

func dropDatabase(ctx context.Context, name string) {
	_ = exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
}

func exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(fmt.Sprintf("dbtest: %s is not a URL: %v", EnvURL, err))
	}
	u.Path = "/" + name
	return u.String()
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
