package signer

import (
	"context"
	"crypto/rsa"
	"time"
)

// DefaultProfile is the profile OCI tooling uses when none is named.
const DefaultProfile = "DEFAULT"

// Kind names a kind of principal.
type Kind string

// The principals ocisigner signs as.
const (
	KindAPIKey        Kind = "api_key"
	KindSession       Kind = "security_token"
	KindInstance      Kind = "instance_principal"
	KindResource      Kind = "resource_principal"
	KindWorkload      Kind = "oke_workload_identity"
	KindTokenExchange Kind = "token_exchange"
)

// Credentials are one identity to sign with: the keyId and the private key
// that signs for it, always handed out together so a signature can never mix
// one token with another token's key. Credentials are immutable once made.
type Credentials struct {
	KeyID   string
	Key     *rsa.PrivateKey
	Kind    Kind
	Profile string
	Region  string // the profile's region, when it has one
	Tenancy string
	Token   *Token // the security token behind a ST$ keyId; nil for API keys
	// Refreshed is when ocisigner itself obtained the token (a refresh, a
	// federation); zero when it was read from disk as another tool wrote it.
	Refreshed time.Time
	// OBOToken, when set, is sent as opc-obo-token on every request signed
	// with these credentials (a profile's delegation_token_file).
	OBOToken string
	// Subject, for a token-exchange principal, describes the identity
	// provider's token that was exchanged for Token; nil otherwise.
	Subject *SubjectToken
}

// SubjectToken describes the JWT of a trusted identity provider (a
// Kubernetes service-account token, a CI's OIDC token) that a
// token-exchange principal exchanged for its OCI token. Its claims are read
// without verifying its signature: the identity domain verifies it, this
// only tells an operator which token was used. It holds no token material.
type SubjectToken struct {
	Issuer   string   // iss
	Subject  string   // sub
	Audience []string // aud
	IssuedAt time.Time
	Expiry   time.Time // zero if the token states none
	// File is where it was read from; empty when it was given as a value.
	File string
}

// Expiry returns when the credentials stop working, or zero if they do not expire.
func (c *Credentials) Expiry() time.Time {
	if c.Token == nil {
		return time.Time{}
	}
	return c.Token.Expiry
}

// A Source supplies the credentials to sign with now. Implementations are
// safe for concurrent use and cheap to call per request. Package
// signer/credentials has the ones that read ~/.oci and the principals.
type Source interface {
	Credentials(ctx context.Context) (*Credentials, error)
}

// StaticSource always returns the same credentials.
type StaticSource struct{ C *Credentials }

// Credentials implements Source.
func (s StaticSource) Credentials(context.Context) (*Credentials, error) { return s.C, nil }

// NewSessionCredentials builds credentials from a raw session token (JWT)
// and its session key, checking that the token was issued for the key.
func NewSessionCredentials(rawToken string, key *rsa.PrivateKey) (*Credentials, error) {
	tok, err := ParseToken(rawToken)
	if err != nil {
		return nil, err
	}
	if !tok.MatchesKey(&key.PublicKey) {
		return nil, &Error{Kind: ErrKeyMismatch, Detail: "session token was issued for another key (its jwk claim differs from the private key)"}
	}
	return &Credentials{KeyID: "ST$" + tok.Raw, Key: key, Kind: KindSession, Token: tok, Tenancy: tok.Tenant}, nil
}
