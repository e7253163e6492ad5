//go:build race

package main

// Volumes under the race detector, which makes every stream several times
// more costly: the bounds the tests check hold at these volumes, and
// .ci/run also runs the suite without the race detector, at full volume.
const (
	idleStreams        = 2000
	envoyShapedStreams = 500
	metricNamesViaGRPC = 200
)
