// Package ocisigner is the root of the ocisigner module: an Envoy ext_proc
// sidecar that signs Oracle Cloud Infrastructure API requests.
//
// The signing lives in package signer, the ext_proc service in package
// extproc, and the binary in cmd/ocisigner.
package ocisigner
