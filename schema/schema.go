// Package schema holds the database migrations, embedded so every binary can apply
// them with its migrate command and the dev app on start.
package schema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable records the applied migration version.
const VersionTable = "ecs_schema_version"

// Migrate brings the database behind conn up to the newest migration. tern takes an
// advisory lock, so concurrent callers (several pods starting at once) are safe.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("schema: new migrator: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("schema: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("schema: migrate: %w", err)
	}
	return nil
}

// MigrateURL connects to url, migrates and disconnects.
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("schema: connect: %w", err)
	}
	defer conn.Close(context.Background())
	return Migrate(ctx, conn)
}
