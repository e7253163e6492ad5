// Package signer signs Oracle Cloud Infrastructure API requests, as the OCI
// SDKs do (draft-cavage HTTP signatures, rsa-sha256), byte for byte the same
// as oci-go-sdk: request in, headers out.
//
//	Request{Method, Host, Target, Header, Body|Digest} ─┐
//	Credentials{KeyID, Key}  ─────────────────────────── Sign(r, c, now) ──▶ Signed{Headers, SigningString}
//	now (the date signed) ───────────────────────────────┘
//
// Sign is a pure function: no files, no network, no goroutines; the same
// inputs give the same bytes (RSASSA-PKCS1-v1_5 is deterministic), with
// OpenSSL's libcrypto in cgo builds and crypto/rsa otherwise (Backend).
// The package also holds what signing needs to know and can decide without
// I/O: keys (ParsePrivateKey, Fingerprint), security tokens (ParseToken),
// which hosts are OCI's (ParseAuthority, IsRealmHost, regions and realms),
// the service aliases of base URLs, and the errors credential problems are
// reported with. Where credentials come from (~/.oci, principals, refresh)
// is package signer/credentials.
package signer
