// Package intercept is the server side of HTTPS interception: a local
// certificate authority, name-constrained to the hosts ocisigner signs
// for, and a delta SDS server from which Envoy's on-demand certificate
// selector fetches a leaf for each TLS server name it sees.
//
//	client ──CONNECT host:443──▶ Envoy ──TLS handshake paused──▶ on-demand selector
//	                                                               │ one delta SDS stream per name
//	                                                               ▼
//	                              SDS.DeltaSecrets ──Allow(name)──▶ CA.Issue(name) ──▶ Secret{leaf, key}
//	                                      │                                            (or removed_resources:
//	                                      └── rotates before notAfter, evicts, caps      the handshake fails)
//
// The CA (LoadOrCreate, Load) permits only DNS names under the OCI realm
// domains and the operator's allowed hosts, in a critical name-constraints
// extension that also excludes every IP address, so that a leaf for any
// other name fails verification in every client that enforces name
// constraints (Go, OpenSSL, BoringSSL, NSS, Java) even if the CA key were
// used by hand. Its key never leaves the state directory other than as a
// signature: it is not logged, printed or put in an error.
//
// The SDS server (NewSDS) answers every name Envoy subscribes to: with a
// freshly minted leaf when the name passes the policy (Config.Allow,
// LooksLikeOCIEndpoint by default) and the CA's constraints, otherwise with
// removed_resources, which fails the handshake at once; Envoy would
// otherwise wait for an answer until the filter chain's
// transport_socket_connect_timeout, or forever. It serves delta xDS only:
// state-of-the-world SDS cannot refuse a name.
//
// Leaf private keys travel to Envoy inside the SDS stream: keep that stream
// on loopback or a Unix socket.
package intercept
