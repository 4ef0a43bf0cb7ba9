package load

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSummarizeNearestRank(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(d)
	require.Equal(t, 100, s.N)
	require.Equal(t, 50*time.Millisecond, s.P50)
	require.Equal(t, 90*time.Millisecond, s.P90)
	require.Equal(t, 99*time.Millisecond, s.P99)
	require.Equal(t, 100*time.Millisecond, s.Max)
	require.Equal(t, 50500*time.Microsecond, s.Mean)
	require.Equal(t, Summary{}, Summarize(nil))
	one := Summarize([]time.Duration{time.Second})
	require.Equal(t, time.Second, one.P50)
	require.Equal(t, time.Second, one.P99)
}
