package worker

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/platform/kafka"
)

// sequencer restores each key's order across topics. Events of one key but of
// different types travel through different topics, which Kafka does not order
// against each other; the API numbers a key's events 1, 2, 3, ... in commit order
// (key_seq), and the range balancer gives one worker the same partition of every
// topic, so all of a key's records reach the same sequencer. It releases a key's
// records in key_seq order and holds one that arrives early until the gap fills.
//
// A gap that does not fill within the timeout (its record sits on a partition
// another worker owns, say after a topic's partition count was changed) is
// skipped: the held records are released and the late one, when it comes, is
// released as soon as it arrives. Ordering is given up there; nothing is lost.
type sequencer struct {
	timeout time.Duration
	maxHeld int
	next    map[string]int64 // key -> last released key_seq
	held    map[string]map[int64]heldRecord
	nHeld   int
}

type heldRecord struct {
	rec   *kgo.Record
	since time.Time
}

func newSequencer(timeout time.Duration, maxHeld int) *sequencer {
	return &sequencer{timeout: timeout, maxHeld: maxHeld, next: map[string]int64{}, held: map[string]map[int64]heldRecord{}}
}

// keySeq reads a record's key_seq; 0 means the event has no key and no order.
func keySeq(r *kgo.Record) int64 {
	for _, h := range r.Headers {
		if h.Key == kafka.HeaderKeySeq {
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil || n < 1 {
				return 0
			}
			return n
		}
	}
	return 0
}

// orderedKeys lists, once each, the keys of recs that carry a key_seq.
func orderedKeys(recs []*kgo.Record) []string {
	var keys []string
	seen := map[string]bool{}
	for _, r := range recs {
		if k := string(r.Key); keySeq(r) != 0 && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// unknown lists the keys of recs whose progress the sequencer has not loaded.
func (s *sequencer) unknown(recs []*kgo.Record) []string {
	var keys []string
	for _, k := range orderedKeys(recs) {
		if _, ok := s.next[k]; !ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// load sets the progress of keys read from PostgreSQL; keys absent from
// progress start at 0.
func (s *sequencer) load(keys []string, progress map[string]int64) {
	for _, k := range keys {
		s.next[k] = progress[k]
	}
}

// push takes polled records and returns those to process now, in order.
func (s *sequencer) push(recs []*kgo.Record, now time.Time) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range recs {
		n := keySeq(r)
		k := string(r.Key)
		switch {
		case n == 0:
			out = append(out, r)
		case n <= s.next[k]:
			// Already passed: a redelivery (deduplicated downstream) or a record
			// whose gap was skipped. Process it; never drop.
			out = append(out, r)
		case n == s.next[k]+1:
			out = append(out, r)
			s.next[k] = n
			out = s.drain(k, out)
		default:
			if s.held[k] == nil {
				s.held[k] = map[int64]heldRecord{}
			}
			if _, dup := s.held[k][n]; !dup {
				s.held[k][n] = heldRecord{rec: r, since: now}
				s.nHeld++
			}
		}
	}
	return s.expire(now, out)
}

// drain appends held records of k that are now next in line.
func (s *sequencer) drain(k string, out []*kgo.Record) []*kgo.Record {
	for {
		h, ok := s.held[k][s.next[k]+1]
		if !ok {
			break
		}
		delete(s.held[k], s.next[k]+1)
		s.nHeld--
		s.next[k]++
		out = append(out, h.rec)
	}
	if len(s.held[k]) == 0 {
		delete(s.held, k)
	}
	return out
}

// expire skips gaps older than the timeout, or the oldest gaps while more than
// maxHeld records are held.
func (s *sequencer) expire(now time.Time, out []*kgo.Record) []*kgo.Record {
	for k, hs := range s.held {
		lowest, oldest := int64(0), now
		for n, h := range hs {
			if lowest == 0 || n < lowest {
				lowest = n
			}
			if h.since.Before(oldest) {
				oldest = h.since
			}
		}
		if now.Sub(oldest) >= s.timeout || s.nHeld > s.maxHeld {
			s.next[k] = lowest - 1
			out = s.drain(k, out)
		}
	}
	return out
}

// holding reports whether records wait for a gap to fill.
func (s *sequencer) holding() bool { return s.nHeld > 0 }

// progress returns the last released key_seq of each key in recs.
func (s *sequencer) progress(recs []*kgo.Record) (keys []string, seqs []int64) {
	keys = orderedKeys(recs)
	for _, k := range keys {
		seqs = append(seqs, s.next[k])
	}
	return keys, seqs
}

// heldFloor returns, per partition, the lowest offset held: offsets may be
// committed only below it, so a crash re-reads the held records.
func (s *sequencer) heldFloor() map[string]map[int32]*kgo.Record {
	floor := map[string]map[int32]*kgo.Record{}
	for _, hs := range s.held {
		for _, h := range hs {
			r := h.rec
			if floor[r.Topic] == nil {
				floor[r.Topic] = map[int32]*kgo.Record{}
			}
			if cur, ok := floor[r.Topic][r.Partition]; !ok || r.Offset < cur.Offset {
				floor[r.Topic][r.Partition] = r
			}
		}
	}
	return floor
}

// forget drops held records of partitions this worker no longer owns; their
// new owner reads them again from the last commit.
func (s *sequencer) forget(lost map[string][]int32) {
	for k, hs := range s.held {
		for n, h := range hs {
			for _, p := range lost[h.rec.Topic] {
				if p == h.rec.Partition {
					delete(hs, n)
					s.nHeld--
				}
			}
		}
		if len(hs) == 0 {
			delete(s.held, k)
		}
	}
	// Progress may be stale once another worker ran these keys; reload it.
	s.next = map[string]int64{}
}
