//go:build race

package signer_test

// sdkParityRequests is the size of the oci-go-sdk parity set under the race
// detector, which makes every request (the SDK's RSA in Go above all)
// several times slower and finds nothing in a pure function repeated; the
// full 3,000 run in .ci/run's passes without it, with each RSA backend.
const sdkParityRequests = 200
