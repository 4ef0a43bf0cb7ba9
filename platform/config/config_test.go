package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEnvParsesAndCollectsErrors(t *testing.T) {
	t.Parallel()
	e := FromMap(map[string]string{
		"ECS_A": " 12 ", "ECS_B": "x", "ECS_D": "250ms", "ECS_E": "soon", "ECS_L": "a, ,b,",
	})
	require.Equal(t, 12, e.Int("ECS_A", 1))
	require.Equal(t, 7, e.Int("ECS_B", 7))
	require.Equal(t, 250*time.Millisecond, e.Duration("ECS_D", time.Second))
	require.Equal(t, time.Second, e.Duration("ECS_E", time.Second))
	require.Equal(t, []string{"a", "b"}, e.List("ECS_L", nil))
	require.Equal(t, "def", e.String("ECS_MISSING", "def"))
	err := e.Err()
	require.ErrorContains(t, err, "ECS_B")
	require.ErrorContains(t, err, "ECS_E")
}

func TestEnvPrefixes(t *testing.T) {
	t.Parallel()
	e := FromMap(map[string]string{"ECS_P": "10.1.2.3/8, ::1/128,", "ECS_BAD": "10.0.0.0/8,10.0.0.1"})
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}, e.Prefixes("ECS_P", nil))
	require.Nil(t, e.Prefixes("ECS_MISSING", nil))
	require.NoError(t, e.Err())
	require.Nil(t, e.Prefixes("ECS_BAD", nil))
	require.ErrorContains(t, e.Err(), `ECS_BAD: "10.0.0.1" is not a CIDR network`)
}

func TestEnvDurations(t *testing.T) {
	t.Parallel()
	e := FromMap(map[string]string{"ECS_D": "5s, 5m,2h", "ECS_BAD": "5s,soon"})
	require.Equal(t, []time.Duration{5 * time.Second, 5 * time.Minute, 2 * time.Hour}, e.Durations("ECS_D", nil))
	require.Nil(t, e.Durations("ECS_MISSING", nil))
	require.NoError(t, e.Err())
	require.Nil(t, e.Durations("ECS_BAD", nil))
	require.ErrorContains(t, e.Err(), `ECS_BAD: "soon" is not a duration`)
}

func TestCommonValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		env              map[string]string
		needDB, needKafk bool
		wantErr          string
	}{
		{"defaults are fine for the dev app", nil, false, false, ""},
		{"db required", nil, true, false, "ECS_DATABASE_URL is required"},
		{"kafka required", map[string]string{"ECS_DATABASE_URL": "postgres://x"}, true, true, "ECS_KAFKA_BROKERS is required"},
		{"bad level", map[string]string{"ECS_LOG_LEVEL": "loud"}, false, false, "ECS_LOG_LEVEL"},
		{"bad format", map[string]string{"ECS_LOG_FORMAT": "xml"}, false, false, "ECS_LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := LoadCommon(FromMap(tt.env), ":8080")
			err := c.Validate(tt.needDB, tt.needKafk)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
