package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/platform/config"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		check   func(*testing.T, Config)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			require.Equal(t, DefaultRetrySchedule, c.RetrySchedule)
			require.Equal(t, 8, c.MaxAttempts)
			require.Equal(t, 5, c.BreakerFailures)
			require.Equal(t, 30*time.Second, c.BreakerCooldown)
			require.Equal(t, 120*time.Hour, c.DisableAfter)
		}},
		{name: "own schedule sets the attempts", env: map[string]string{"ECS_WORKER_RETRY_SCHEDULE": "1s,1m", "ECS_WORKER_DISABLE_AFTER": "0"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, []time.Duration{time.Second, time.Minute}, c.RetrySchedule)
				require.Equal(t, 3, c.MaxAttempts)
				require.Negative(t, c.DisableAfter, "0 never disables")
			}},
		{name: "unparsable schedule", env: map[string]string{"ECS_WORKER_RETRY_SCHEDULE": "5s,later"}, wantErr: "ECS_WORKER_RETRY_SCHEDULE"},
		{name: "zero step", env: map[string]string{"ECS_WORKER_RETRY_SCHEDULE": "5s,0s"}, wantErr: "ECS_WORKER_RETRY_SCHEDULE steps must be from 1ms to 168h"},
		{name: "breakers off", env: map[string]string{"ECS_WORKER_BREAKER_FAILURES": "0"},
			check: func(t *testing.T, c Config) { require.Negative(t, c.BreakerFailures) }},
		{name: "negative breaker", env: map[string]string{"ECS_WORKER_BREAKER_FAILURES": "-3"}, wantErr: "ECS_WORKER_BREAKER_FAILURES"},
		{name: "tiny cooldown", env: map[string]string{"ECS_WORKER_BREAKER_COOLDOWN": "1ms"}, wantErr: "ECS_WORKER_BREAKER_COOLDOWN"},
		{name: "tiny disable-after", env: map[string]string{"ECS_WORKER_DISABLE_AFTER": "10ms"}, wantErr: "ECS_WORKER_DISABLE_AFTER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := config.FromMap(tc.env)
			c := LoadConfig(e).WithDefaults()
			err := e.Err()
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}
