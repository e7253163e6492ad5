//go:build !race

package extproctest_test

// uploadSize is the 1 GiB upload ocisigner must stream.
const uploadSize = 1 << 30

// concurrentRequests is ocisigner's 1,000 requests at once.
const concurrentRequests = 1000
