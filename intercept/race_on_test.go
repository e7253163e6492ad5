//go:build race

package intercept

// volumeNames is how many distinct names the volume test subscribes to
// under the race detector, which slows every mint and goroutine switch
// several times over; .ci/run also runs the suite without it, at the full
// 10,000.
const volumeNames = 1000
