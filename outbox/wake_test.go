package outbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeNotify counts NOTIFYs; they run one at a time (the waker's promise) and
// take a little while, so callers pile up behind them.
type fakeNotify struct {
	started, finished atomic.Int64 // index of the last NOTIFY started / finished
	inFlight          atomic.Int32
	overlap           atomic.Bool
	fail              atomic.Bool
}

func (f *fakeNotify) notify(ctx context.Context) error {
	if f.inFlight.Add(1) > 1 {
		f.overlap.Store(true)
	}
	defer f.inFlight.Add(-1)
	i := f.started.Add(1)
	time.Sleep(time.Millisecond)
	if f.fail.Load() {
		return errors.New("notify failed")
	}
	f.finished.Store(i)
	return nil
}

func TestWakerCoversEveryCallerAndCoalesces(t *testing.T) {
	t.Parallel()
	f := &fakeNotify{}
	w := newWaker(f.notify)
	const callers, calls = 32, 40
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				before := f.started.Load()
				if err := w.wake(context.Background()); err != nil {
					t.Error(err)
					return
				}
				// A NOTIFY that started after this call began has finished.
				if f.finished.Load() <= before {
					t.Errorf("wake returned with no NOTIFY started after it (started %d before, finished %d)", before, f.finished.Load())
					return
				}
			}
		})
	}
	wg.Wait()
	require.False(t, f.overlap.Load(), "NOTIFYs ran concurrently")
	n := f.started.Load()
	require.Less(t, n, int64(callers*calls/4), "wake-ups were not coalesced: %d NOTIFYs for %d wakes", n, callers*calls)
	t.Logf("%d NOTIFYs for %d wakes", n, callers*calls)
}

func TestWakerReportsFailureAndRecovers(t *testing.T) {
	t.Parallel()
	f := &fakeNotify{}
	w := newWaker(f.notify)
	f.fail.Store(true)
	require.Error(t, w.wake(context.Background()))
	f.fail.Store(false)
	require.NoError(t, w.wake(context.Background()))
	require.Equal(t, int64(2), f.started.Load())
}

func TestWakerWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	w := newWaker(func(ctx context.Context) error { <-release; return nil })
	led := make(chan error, 1)
	go func() { led <- w.wake(context.Background()) }()
	// Wait until the first caller leads, then a second one must wait for it.
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running }, time.Second, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.wake(ctx), context.Canceled)
	close(release)
	require.NoError(t, <-led)
}

// TestWakerSpacesNotifies: NOTIFYs start at least the gap apart, however many
// callers wake it, and every caller still returns.
func TestWakerSpacesNotifies(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var starts []time.Time
	w := newWaker(func(context.Context) error {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return nil
	})
	w.gap = 5 * time.Millisecond
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				require.NoError(t, w.wake(context.Background()))
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Greater(t, len(starts), 1)
	for i := 1; i < len(starts); i++ {
		require.GreaterOrEqual(t, starts[i].Sub(starts[i-1]), 4*time.Millisecond, "NOTIFY %d", i)
	}
}
