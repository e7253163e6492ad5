package intercept

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Bounds of the volume test. volumeMaxNames names stay live, each with its
// leaf and its open stream on both ends; volumeHeapBound is what they may
// add to the heap of the test process (server and client), and
// volumeLeakBound what the second half of the names may add to the first
// half's: nothing that grows with the names seen. Without the cap every
// name would keep its stream and leaf, tens of kilobytes each: hundreds of
// megabytes for 10,000.
const (
	volumeMaxNames  = 64
	volumeHeapBound = 4 << 20
	volumeLeakBound = 1 << 20
)

// TestSDSManyNamesStayBounded subscribes to volumeNames distinct names,
// each on a stream of its own that stays open until the server removes the
// name, as Envoy's selector keeps every SNI it has seen (Envoy 1.37 to 1.40
// never lets one go by itself). Live names and open streams stay at the
// cap, every evicted name's stream is told and ended, and the heap stays
// bounded and does not grow with the names seen. The log is discarded and
// no observer records, and the clock fires no timers, so that only the
// SDS and gRPC hold memory.
func TestSDSManyNamesStayBounded(t *testing.T) {
	clk := &stalledClock{now: t0}
	h := newHarness(t, func(c *Config) {
		c.MaxNames = volumeMaxNames
		c.MintBurst = 1 << 30 // the clock stands still: no refill
		c.LeafTTL = 30 * time.Minute
		c.Clock, c.Observer, c.Logger = clk, nil, nil
	})
	var removed, answered atomic.Int64
	run := func(from, to int) {
		names := make(chan int)
		var workers sync.WaitGroup
		for range 4 {
			workers.Add(1)
			go func() {
				defer workers.Done()
				for i := range names {
					if !volumeSubscribe(t, h, i, &answered, &removed) {
						return
					}
				}
			}()
		}
		for i := from; i < to; i++ {
			names <- i
		}
		close(names)
		workers.Wait()
		// The last removals reach their streams and those streams end:
		// bounded by the hang guard, not timed.
		for start := time.Now(); removed.Load() < int64(to-volumeMaxNames) || h.sds.Stats().Streams > volumeMaxNames; time.Sleep(time.Millisecond) {
			if time.Since(start) > hangGuard {
				t.Fatalf("%d of %d evicted names told, %d streams open", removed.Load(), to-volumeMaxNames, h.sds.Stats().Streams)
			}
		}
	}
	before := heapInUse()
	run(0, volumeNames/2)
	half := heapInUse()
	run(volumeNames/2, volumeNames)
	after := heapInUse()
	st := h.sds.Stats()
	t.Logf("%d names: %d live, %d streams; heap grew %d KiB, %d KiB of it in the second half",
		volumeNames, st.LiveNames, st.Streams, (int64(after)-int64(before))>>10, (int64(after)-int64(half))>>10)
	if st.LiveNames != volumeMaxNames || st.Streams != volumeMaxNames {
		t.Errorf("%d live names and %d streams; the cap is %d", st.LiveNames, st.Streams, volumeMaxNames)
	}
	if answered.Load() != volumeNames {
		t.Errorf("%d of %d names answered", answered.Load(), volumeNames)
	}
	if grown := int64(after) - int64(before); grown > volumeHeapBound {
		t.Errorf("the heap grew by %d KiB for %d names; bound %d KiB", grown>>10, volumeNames, volumeHeapBound>>10)
	}
	if grown := int64(after) - int64(half); grown > volumeLeakBound {
		t.Errorf("the heap grew by %d KiB over the second %d names: it grows with the names seen", grown>>10, volumeNames/2)
	}
}

// volumeSubscribe opens name i's stream, waits for its first answer (as a
// handshake waits), and leaves a reader on the stream that ACKs leaves and
// expects, once the name is evicted, its removal and then the stream's end.
func volumeSubscribe(t *testing.T, h *harness, i int, answered, removed *atomic.Int64) bool {
	name := fmt.Sprintf("svc%d.us-ashburn-1.oraclecloud.com", i)
	s, err := h.client.DeltaSecrets(context.Background())
	if err == nil {
		err = s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNamesSubscribe: []string{name}})
	}
	if err != nil {
		t.Error(err)
		return false
	}
	first := make(chan struct{})
	go func() {
		defer s.CloseSend()
		for n := 0; ; n++ {
			resp, err := s.Recv()
			if n == 0 {
				answered.Add(1)
				close(first)
			}
			switch {
			case err != nil:
				if n == 0 {
					t.Errorf("%s: %v", name, err)
				}
				return // the test's end
			case len(resp.GetResources()) == 1:
				if i%500 == 0 { // the full check, now and then: it costs a verification
					if _, err := h.leafProblem(name, resp.GetResources()[0]); err != nil {
						t.Error(err)
					}
				}
				_ = s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResponseNonce: resp.GetNonce()})
			case slices.Equal(resp.GetRemovedResources(), []string{name}):
				// Evicted; under four concurrent subscribers possibly before
				// its first leaf was sent.
				removed.Add(1)
				if _, err := s.Recv(); err != io.EOF {
					t.Errorf("%s: after the removal the stream goes on: %v", name, err)
				}
				return
			default:
				t.Errorf("%s: %v", name, resp)
				return
			}
		}
	}()
	<-first
	return true
}
