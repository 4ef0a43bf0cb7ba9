package worker

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/platform/kafka"
)

func rec(topic string, offset int64, key string, seq int64) *kgo.Record {
	r := &kgo.Record{Topic: topic, Offset: offset, Key: []byte(key)}
	if seq > 0 {
		r.Headers = []kgo.RecordHeader{{Key: kafka.HeaderKeySeq, Value: []byte(strconv.FormatInt(seq, 10))}}
	}
	return r
}

func seqsOf(rs []*kgo.Record) []int64 {
	out := []int64{}
	for _, r := range rs {
		out = append(out, keySeq(r))
	}
	return out
}

func TestSequencer(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		progress int64
		rounds   [][]*kgo.Record
		at       []time.Duration // when each round is pushed
		want     [][]int64
		holding  bool
	}{
		{"in order passes through", 0,
			[][]*kgo.Record{{rec("a", 0, "k", 1), rec("b", 0, "k", 2), rec("a", 1, "k", 3)}},
			[]time.Duration{0}, [][]int64{{1, 2, 3}}, false},
		{"early record waits for the gap", 0,
			[][]*kgo.Record{{rec("b", 0, "k", 2), rec("b", 1, "k", 3)}, {rec("a", 0, "k", 1)}},
			[]time.Duration{0, time.Millisecond}, [][]int64{{}, {1, 2, 3}}, false},
		{"progress from a previous run", 5,
			[][]*kgo.Record{{rec("a", 0, "k", 7), rec("a", 1, "k", 6)}},
			[]time.Duration{0}, [][]int64{{6, 7}}, false},
		{"redelivered records pass", 5,
			[][]*kgo.Record{{rec("a", 0, "k", 3), rec("a", 1, "k", 5)}},
			[]time.Duration{0}, [][]int64{{3, 5}}, false},
		{"records without key_seq pass", 0,
			[][]*kgo.Record{{rec("a", 0, "x", 0), rec("a", 1, "k", 2)}},
			[]time.Duration{0}, [][]int64{{0}}, true},
		{"a gap that never fills is skipped after the timeout", 0,
			[][]*kgo.Record{{rec("b", 0, "k", 3), rec("b", 1, "k", 2)}, {}, {rec("a", 0, "k", 1)}},
			[]time.Duration{0, 10 * time.Second, 11 * time.Second}, [][]int64{{}, {2, 3}, {1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSequencer(5*time.Second, 100)
			s.load(s.unknown(tt.rounds[0]), map[string]int64{"k": tt.progress})
			for i, round := range tt.rounds {
				got := s.push(round, t0.Add(tt.at[i]))
				require.Equal(t, tt.want[i], seqsOf(got), "round %d", i)
			}
			require.Equal(t, tt.holding, s.holding())
		})
	}
}

func TestSequencerHeldFloorAndForget(t *testing.T) {
	t.Parallel()
	s := newSequencer(time.Minute, 100)
	s.load([]string{"k"}, nil)
	require.Empty(t, s.push([]*kgo.Record{rec("b", 7, "k", 3), rec("b", 4, "k", 2)}, time.Unix(0, 0)))
	floor := s.heldFloor()
	require.Equal(t, int64(4), floor["b"][0].Offset)
	s.forget(map[string][]int32{"b": {0}})
	require.False(t, s.holding())
	require.Equal(t, []string{"k"}, s.unknown([]*kgo.Record{rec("a", 0, "k", 1)}))
}

func TestSequencerCapReleasesOldest(t *testing.T) {
	t.Parallel()
	s := newSequencer(time.Hour, 2)
	s.load([]string{"k"}, nil)
	got := s.push([]*kgo.Record{rec("b", 0, "k", 5), rec("b", 1, "k", 6), rec("b", 2, "k", 7)}, time.Unix(0, 0))
	require.Equal(t, []int64{5, 6, 7}, seqsOf(got))
}
