package signertest

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
)

const cryptoSHA256 = crypto.SHA256

// Issuer mints security tokens as OCI's auth service does: RS256 JWTs whose
// jwk claim is the session public key. Servers that trust the issuer accept
// ST$ keyIds only for tokens it minted.
type Issuer struct {
	key *rsa.PrivateKey
	mu  sync.Mutex
	n   int
}

var (
	issuerOnce sync.Once
	issuerKey  *rsa.PrivateKey
)

// NewIssuer returns an issuer. All issuers of a process share one signing
// key (generating keys is slow), which no Key(t, i) returns.
func NewIssuer(t testing.TB) *Issuer {
	issuerOnce.Do(func() {
		k, err := fixedKey(issuerKeyAt)
		if err != nil {
			panic(err)
		}
		issuerKey = k
	})
	return &Issuer{key: issuerKey}
}

// TokenOptions shape a minted token. Zero values give a one-hour session
// token issued now for the subject "ocid1.user.oc1..test".
type TokenOptions struct {
	IssuedAt   time.Time
	Lifetime   time.Duration
	SessionEnd time.Time // sess_exp; zero means IssuedAt + 24h
	Subject    string
	Tenant     string
	// ResTenant, when set, is written as res_tenant, as resource principal
	// tokens carry it; NoTenant leaves tenant out.
	ResTenant string
	NoTenant  bool
	Ptype     string
	NoJWK     bool
}

// Mint returns a token for the session key pub.
func (is *Issuer) Mint(t testing.TB, pub *rsa.PublicKey, o TokenOptions) string {
	t.Helper()
	if o.IssuedAt.IsZero() {
		o.IssuedAt = time.Now()
	}
	if o.Lifetime == 0 {
		o.Lifetime = time.Hour
	}
	if o.SessionEnd.IsZero() {
		o.SessionEnd = o.IssuedAt.Add(24 * time.Hour)
	}
	if o.Subject == "" {
		o.Subject = "ocid1.user.oc1..test"
	}
	if o.Tenant == "" {
		o.Tenant = "ocid1.tenancy.oc1..test"
	}
	if o.Ptype == "" {
		o.Ptype = "user"
	}
	is.mu.Lock()
	is.n++
	jti := is.n
	is.mu.Unlock()
	claims := jwt.MapClaims{
		"iss":      "authService.oracle.com",
		"aud":      "oci",
		"sub":      o.Subject,
		"tenant":   o.Tenant,
		"ptype":    o.Ptype,
		"iat":      o.IssuedAt.Unix(),
		"exp":      o.IssuedAt.Add(o.Lifetime).Unix(),
		"sess_exp": o.SessionEnd.UTC().Format("Mon, 02 Jan 2006 15:04:05 MST"),
		"jti":      fmt.Sprintf("tok-%d", jti),
	}
	if !o.NoJWK {
		claims["jwk"] = signer.JWK(pub, "sess")
	}
	if o.ResTenant != "" {
		claims["res_tenant"] = o.ResTenant
	}
	if o.NoTenant {
		delete(claims, "tenant")
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(is.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Verify checks that raw was minted by this issuer and returns its session
// public key, as OCI does for a ST$ keyId. It does not check expiry.
func (is *Issuer) Verify(raw string) (*rsa.PublicKey, *signer.Token, error) {
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return &is.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()); err != nil {
		return nil, nil, err
	}
	tok, err := signer.ParseToken(raw)
	if err != nil {
		return nil, nil, err
	}
	pub := tok.PublicKey()
	if pub == nil {
		return nil, nil, jwt.ErrTokenInvalidClaims
	}
	return pub, tok, nil
}
