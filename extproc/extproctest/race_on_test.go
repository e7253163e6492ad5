//go:build race

package extproctest_test

// uploadSize is smaller under the race detector, which slows every copy several times over;
// the point (nothing is buffered) shows at any size well above the allocation bound.
const uploadSize = 64 << 20

// concurrentRequests is the brief's 200 under the race detector.
const concurrentRequests = 200
