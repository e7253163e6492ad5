//go:build race

package signertest

// Volumes under the race detector, which slows every copy and goroutine
// switch several times over: what the tests show holds at these sizes, and
// .ci/run also runs the suite without the race detector, at full size.
const (
	// streamedUpload is far above the 16 MiB a streamed upload may allocate.
	streamedUpload = 64 << 20
	// concurrentRequests at once are enough for the race detector to see
	// the server's shared state touched from many goroutines.
	concurrentRequests = 300
)
