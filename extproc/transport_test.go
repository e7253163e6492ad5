package extproc

import "testing"

func TestDirtyPoolGivesTheLengthAskedFromTheSmallestTierThatHoldsIt(t *testing.T) {
	p := &dirtyPool{}
	for _, tc := range []struct{ n, wantCap int }{
		{1, 256}, {256, 256}, {257, 512}, {9, 256},
		{16 << 10, 16 << 10}, {16<<10 + 1, 32 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1}, // beyond the tiers: exact, not pooled
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.wantCap)
		}
		p.Put(b)
	}
}

func TestDirtyPoolFilesABufferUnderTheLargestTierItsCapacityFills(t *testing.T) {
	// A buffer handed back with a capacity between tiers must go to the
	// lower one, or a later Get of the upper tier would get too little.
	for _, tc := range []struct {
		cap    int
		want   int
		pooled bool
	}{
		{255, 0, false}, {256, 8, true}, {511, 8, true}, {512, 9, true},
		{3000, 11, true}, {1 << 20, 20, true}, {2<<20 - 1, 20, true}, {2 << 20, 0, false},
	} {
		got, ok := putTier(tc.cap)
		if ok != tc.pooled || (ok && got != tc.want) {
			t.Errorf("putTier(%d) = %d, %v; want %d, %v", tc.cap, got, ok, tc.want, tc.pooled)
		}
	}
}

func TestDirtyPoolReusedBufferKeepsItsCapacity(t *testing.T) {
	p := &dirtyPool{}
	for range 100 {
		b := p.Get(5000) // tier 13: 8 KiB
		if cap(*b) < 5000 || len(*b) != 5000 {
			t.Fatalf("len %d cap %d", len(*b), cap(*b))
		}
		*b = (*b)[:10] // gRPC may hand back a resliced buffer
		p.Put(b)
		if c := cap(*p.Get(8 << 10)); c < 8<<10 {
			t.Fatalf("a tier-13 Get returned capacity %d", c)
		}
	}
}
