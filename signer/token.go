package signer

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token is an OCI security token (a session token, or the token of an
// instance, resource or workload principal) with the claims ocisigner uses.
// Its signature is not verified: OCI verifies it, ocisigner only reads it.
type Token struct {
	Raw     string // the JWT as OCI issued it, trimmed
	Issuer  string // iss
	Subject string // sub
	Tenant  string // tenant
	// ResourceTenant is res_tenant, the tenancy of the resource a resource
	// principal or an OKE workload token was issued to.
	ResourceTenant string
	IssuedAt       time.Time // iat
	Expiry         time.Time // exp
	SessionEnd     time.Time // sess_exp: last moment the session can be refreshed; zero if absent
	PrincipalType  string    // ptype

	jwk *rsa.PublicKey // the session public key the token was issued for, if stated
}

// ParseToken reads a security token. Surrounding whitespace (the trailing
// newline of a token file) is trimmed. Errors wrap ErrTokenMalformed and
// never quote the token.
func ParseToken(raw string) (*Token, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token is empty"}
	}
	// MapClaims, not RegisteredClaims: claims ocisigner does not use (jti,
	// aud) must not make a token unreadable whatever their JSON type.
	c := jwt.MapClaims{}
	p := jwt.NewParser(jwt.WithoutClaimsValidation())
	if _, _, err := p.ParseUnverified(raw, c); err != nil {
		return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token is not a JWT", Err: err}
	}
	if err := checkSignatureLength(raw); err != nil {
		return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token is truncated", Err: err}
	}
	exp, err := c.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token has no readable exp claim", Err: err}
	}
	t := &Token{Raw: raw, Expiry: exp.Time}
	if iat, err := c.GetIssuedAt(); err == nil && iat != nil {
		t.IssuedAt = iat.Time
	}
	t.Issuer, _ = c["iss"].(string)
	t.Subject, _ = c["sub"].(string)
	t.Tenant, _ = c["tenant"].(string)
	t.ResourceTenant, _ = c["res_tenant"].(string)
	t.PrincipalType, _ = c["ptype"].(string)
	if t.SessionEnd, err = parseSessExp(c["sess_exp"]); err != nil {
		return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token has an unreadable sess_exp claim", Err: err}
	}
	if j, ok := c["jwk"]; ok && j != nil {
		if t.jwk, err = parseJWK(j); err != nil {
			return nil, &Error{Kind: ErrTokenMalformed, Detail: "security token has an unreadable jwk claim", Err: err}
		}
	}
	return t, nil
}

// checkSignatureLength rejects an RS256/PS256 token whose signature is not
// a whole RSA signature. The signature is not verified here, so without this
// a token file read while `oci session refresh` rewrites it in place could
// parse fine with its signature cut short, and every request would get a 401.
func checkSignatureLength(raw string) error {
	i := strings.LastIndexByte(raw, '.')
	if i < 0 {
		return fmt.Errorf("no signature")
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw[i+1:], "="))
	if err != nil {
		return err
	}
	header, _, _ := strings.Cut(raw, ".")
	hb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(header, "="))
	if err != nil {
		return err
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return err
	}
	if (strings.HasPrefix(h.Alg, "RS") || strings.HasPrefix(h.Alg, "PS")) && (len(sig) < 128 || len(sig)%64 != 0) {
		return fmt.Errorf("%s signature of %d bytes is not a whole RSA signature", h.Alg, len(sig))
	}
	return nil
}

// parseSessExp accepts the date string OCI writes ("Sat, 08 Nov 2025
// 17:19:55 UTC") and, defensively, epoch seconds.
func parseSessExp(v any) (time.Time, error) {
	switch s := v.(type) {
	case nil:
		return time.Time{}, nil
	case float64:
		return time.Unix(int64(s), 0).UTC(), nil
	case string:
		for _, layout := range []string{time.RFC1123, time.RFC1123Z, time.RFC3339} {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("date %q in no known layout", s)
	}
	return time.Time{}, fmt.Errorf("unexpected type %T", v)
}

// parseJWK reads the RSA public key of a jwk claim, which OCI writes as a
// JSON string holding a JSON object (and some issuers as the object itself).
func parseJWK(v any) (*rsa.PublicKey, error) {
	var obj map[string]any
	switch j := v.(type) {
	case string:
		if err := json.Unmarshal([]byte(j), &obj); err != nil {
			return nil, err
		}
	case map[string]any:
		obj = j
	default:
		return nil, fmt.Errorf("unexpected type %T", v)
	}
	if kty, _ := obj["kty"].(string); kty != "RSA" {
		return nil, fmt.Errorf("kty %q is not RSA", kty)
	}
	nb, err := b64url(obj["n"])
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	eb, err := b64url(obj["e"])
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	e := new(big.Int).SetBytes(eb)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("exponent out of range")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(e.Int64())}, nil
}

func b64url(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, fmt.Errorf("missing")
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// MatchesKey reports whether the token was issued for key. A token that does
// not state its key (no jwk claim) matches any key.
func (t *Token) MatchesKey(key *rsa.PublicKey) bool {
	if t.jwk == nil {
		return true
	}
	return t.jwk.E == key.E && t.jwk.N.Cmp(key.N) == 0
}

// Expired reports whether the token's exp is at or before now.
func (t *Token) Expired(now time.Time) bool {
	return !now.Before(t.Expiry)
}

// JWK renders pub as the jwk claim OCI puts in session tokens, for tests and
// stand-ins that issue tokens.
func JWK(pub *rsa.PublicKey, kid string) string {
	b, _ := json.Marshal(map[string]string{
		"kid": kid,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"kty": "RSA",
		"alg": "RS256",
		"use": "sig",
	})
	return string(b)
}

// PublicKey returns the session public key the token names in its jwk claim, or nil.
func (t *Token) PublicKey() *rsa.PublicKey { return t.jwk }
