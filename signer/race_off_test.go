//go:build !race

package signer_test

// sdkParityRequests is the oci-go-sdk parity set: 3,000 generated requests.
const sdkParityRequests = 3000
