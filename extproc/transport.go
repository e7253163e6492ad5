package extproc

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// transportOptions tune grpc-go's receive path for what Envoy sends here:
// buffered bodies of up to tens of MiB arriving as 16 KiB HTTP/2 frames.
// BenchmarkService serves the service without them in the same run and
// reports it as x-untuned: on the 2-core VM they were measured on they took
// 0.01-0.05 off the 1 MiB POST ratio, and left GET as it was. Stream
// workers (grpc.NumStreamWorkers), which spare each stream's goroutine
// growing its stack for the RSA signature, measured no better there, and
// are left out.
func transportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// The frames of a body are read from the socket 32 KiB at a time by
		// default: 32+ read syscalls per MiB, each a kernel round trip that
		// costs more than the copy it does. Read buffers come from a pool
		// and go back once consumed, so an idle connection holds none.
		grpc.ReadBufferSize(readBufferSize),
		// gRPC's default pool zeroes every frame buffer it hands out,
		// which for a 1 MiB body costs as much as the kernel's copy of it.
		// Every buffer gRPC takes is filled by a read before it is looked
		// at (gRPC's own socket read buffers are not zeroed either).
		experimental.BufferPool(frameBuffers),
	}
}

const readBufferSize = 256 << 10

var frameBuffers = &dirtyPool{}

// dirtyPool is a mem.BufferPool of power-of-two tiers from 256 B to 1 MiB
// that does not clear buffers. Larger requests are allocated and dropped.
type dirtyPool struct {
	tiers [maxTier + 1]sync.Pool
}

const minTier, maxTier = 8, 20

var _ mem.BufferPool = (*dirtyPool)(nil)

// tierFor is the smallest tier holding n bytes.
func tierFor(n int) int {
	if n <= 1<<minTier {
		return minTier
	}
	return bits.Len(uint(n - 1))
}

func (p *dirtyPool) Get(n int) *[]byte {
	t := tierFor(n)
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

// Put files a buffer under the largest tier its capacity fills, so a
// buffer handed back resliced still serves every Get of its tier.
func (p *dirtyPool) Put(b *[]byte) {
	if t, ok := putTier(cap(*b)); ok {
		p.tiers[t].Put(b)
	}
}

// putTier is the largest tier a buffer of capacity c fills; none for
// buffers below the smallest tier or above the largest.
func putTier(c int) (int, bool) {
	if c < 1<<minTier {
		return 0, false
	}
	t := bits.Len(uint(c)) - 1
	return t, t <= maxTier
}
