package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBaseSoftStop(t *testing.T) {
	t.Parallel()
	var b Base
	b.Stop(context.Background()) // safe without Start
	finished := make(chan struct{})
	b.StartRun(context.Background(), func(ctx context.Context, stopping <-chan struct{}) {
		<-stopping
		close(finished)
	})
	b.StartRun(context.Background(), func(context.Context, <-chan struct{}) { t.Error("second start ran") })
	require.True(t, b.Running())
	b.Stop(context.Background())
	<-finished
	require.False(t, b.Running())
	b.Stop(context.Background()) // idempotent
}

func TestBaseStopFallsBackToHardCancel(t *testing.T) {
	t.Parallel()
	var b Base
	cancelled := make(chan struct{})
	b.StartRun(context.Background(), func(ctx context.Context, _ <-chan struct{}) {
		<-ctx.Done() // ignores the soft stop
		close(cancelled)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	b.Stop(ctx)
	<-cancelled
}

func TestBaseKill(t *testing.T) {
	t.Parallel()
	var b Base
	b.StartRun(context.Background(), func(ctx context.Context, _ <-chan struct{}) { <-ctx.Done() })
	b.Kill()
	require.False(t, b.Running())
	b.Kill()
}
