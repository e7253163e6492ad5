//go:build !race

package extproc_test

const (
	// uploadSize is the 1 GiB PutObject ocisigner must stream.
	uploadSize = 1 << 30
	// concurrentStreams is ocisigner's 1,000 requests at once.
	concurrentStreams = 1000
)
