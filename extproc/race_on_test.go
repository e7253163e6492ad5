//go:build race

package extproc_test

// Volumes under the race detector, which slows every copy of a byte and
// every goroutine switch several times over: what the tests show holds at
// these sizes, and .ci/run also runs the suite without the race detector,
// at full size.
const (
	// uploadSize is each PutObject of the upload tests: twice Envoy's
	// 32 MiB buffer limit, so a body Envoy buffered would get its 413.
	uploadSize = 64 << 20
	// concurrentStreams is how many requests run at once.
	concurrentStreams = 200
)
