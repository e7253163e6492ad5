//go:build !race

package main

const (
	// idleStreams is the attack's 20,000 idle streams over 4 connections.
	idleStreams = 20000
	// envoyShapedStreams is 2,000 concurrent Envoy-shaped requests.
	envoyShapedStreams = 2000
	// metricNamesViaGRPC is how many distinct methods and profile names go
	// through the gRPC service (10,000 more go straight to the metrics).
	metricNamesViaGRPC = 1000
)
