//go:build !race

package signertest

// Volumes without the race detector (race_on_test.go has the others).
const (
	streamedUpload     = 256 << 20
	concurrentRequests = 1000
)
