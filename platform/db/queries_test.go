package db

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadQueries(t *testing.T) {
	t.Parallel()
	const file = `
-- name: one
SELECT 1;
-- name: two
SELECT 2
FROM x;
`
	var q struct {
		One string `sql:"one"`
		Two string `sql:"two"`
	}
	require.NoError(t, loadQueries(file, &q))
	require.Equal(t, "SELECT 1;", q.One)
	require.Equal(t, "SELECT 2\nFROM x;", q.Two)

	tests := []struct {
		name, file string
	}{
		{"missing query", "-- name: one\nSELECT 1;"},
		{"unused query", file + "-- name: three\nSELECT 3;"},
		{"duplicate", file + "-- name: two\nSELECT 2;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q struct {
				One string `sql:"one"`
				Two string `sql:"two"`
			}
			require.Error(t, loadQueries(tt.file, &q))
		})
	}
}
