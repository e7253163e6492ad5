package extproctest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// This file is the HTTP filter envoy.filters.http.jwt_authn ahead of the ext_proc filters
// (source/extensions/filters/http/jwt_authn: filter.cc, verifier.cc, authenticator.cc,
// extractor.cc, and jwt_verify_lib for the token itself), for the configurations
// ocisigner's shared gateway uses: local JWKS of RSA keys, tokens from headers, rules by
// path prefix whose requirement is a provider, allow_missing, allow_missing_or_failed, or
// requires_any of those. A verified token's payload goes into the request's dynamic
// metadata under the namespace JWTAuthnNamespace, where ext_proc's forwarding_namespaces
// find it (Config.ForwardingNamespaces).

// JWTAuthnNamespace is the dynamic metadata namespace jwt_authn writes
// (filter.cc Filter::setExtractedData).
const JWTAuthnNamespace = "envoy.filters.http.jwt_authn"

// JWTAuthn is a jwt_authn filter's JwtAuthentication.
type JWTAuthn struct {
	Providers map[string]JWTProvider
	// Rules are tried in order; the first whose prefix matches the path names the
	// requirement (matcher.cc); a request no rule matches is not verified at all.
	Rules []JWTRule
}

// JWTProvider is a JwtProvider.
type JWTProvider struct {
	Issuer    string   // "" allows every issuer (extractor.cc JwtIssuerChecker)
	Audiences []string // empty allows every audience
	// JWKS is local_jwks: a JSON Web Key Set of RSA keys.
	JWKS []byte
	// Forward keeps the token in the request once verified; false removes the header it
	// came in (authenticator.cc handleGoodJwt, JwtHeaderLocation::removeJwt).
	Forward bool
	// PayloadInMetadata is the name the verified payload gets in the namespace.
	PayloadInMetadata string
	// FromHeaders are where tokens are looked for; New refuses none (Envoy's default
	// also reads the access_token query parameter, which the stand-in does not).
	FromHeaders []JWTHeader
	// ClockSkew is clock_skew_seconds; 0 means Envoy's 60 s.
	ClockSkew time.Duration
}

// JWTHeader is a JwtHeader: a header name and the prefix before the token.
type JWTHeader struct{ Name, ValuePrefix string }

// JWTRule is a RequirementRule with a prefix match.
type JWTRule struct {
	Prefix   string
	Requires JWTRequirement
}

// JWTRequirement is a JwtRequirement: one of its fields is set; none set is "no
// requirement" (verifier.cc AllowAllVerifierImpl).
type JWTRequirement struct {
	ProviderName         string
	AllowMissing         bool
	AllowMissingOrFailed bool
	RequiresAny          []JWTRequirement
}

// Statuses of jwt_verify_lib (status.cc getStatusString) the stand-in produces.
const (
	jwtMissed           = "Jwt is missing"
	jwtBadFormat        = "Jwt is not in the form of Header.Payload.Signature"
	jwtHeaderParseError = "Jwt header is an invalid Base64url input or an invalid JSON"
	jwtPayloadParse     = "Jwt payload is an invalid Base64 or an invalid JSON"
	jwtExpired          = "Jwt is expired"
	jwtNotYetValid      = "Jwt not yet valid"
	jwtUnknownIssuer    = "Jwt issuer is not configured"
	jwtAudience         = "Audiences in Jwt are not allowed"
	jwtVerifyFail       = "Jwt verification fails"
	jwksKidAlgMismatch  = "Jwks doesn't have key to match kid or alg from Jwt"
)

// jwtAuthn is the filter, compiled.
type jwtAuthn struct {
	providers map[string]*jwtProvider
	rules     []JWTRule
}

type jwtProvider struct {
	JWTProvider
	keys []jwk
}

type jwk struct {
	kid, alg string
	key      *rsa.PublicKey
}

func (c *JWTAuthn) compile() (*jwtAuthn, error) {
	if c == nil {
		return nil, nil
	}
	out := &jwtAuthn{providers: map[string]*jwtProvider{}, rules: c.Rules}
	for name, p := range c.Providers {
		if len(p.FromHeaders) == 0 {
			return nil, fmt.Errorf("%w: jwt_authn provider %s: default token locations (they include the access_token query parameter)", ErrUnsupported, name)
		}
		keys, err := parseJWKS(p.JWKS)
		if err != nil {
			return nil, fmt.Errorf("jwt_authn provider %s: %w", name, err)
		}
		if p.ClockSkew == 0 {
			p.ClockSkew = 60 * time.Second
		}
		out.providers[name] = &jwtProvider{JWTProvider: p, keys: keys}
	}
	for _, r := range c.Rules {
		if err := out.checkRequirement(r.Requires); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (a *jwtAuthn) checkRequirement(r JWTRequirement) error {
	if r.ProviderName != "" {
		if _, ok := a.providers[r.ProviderName]; !ok {
			// verifier.cc innerCreate.
			return fmt.Errorf("%w: Required provider ['%s'] is not configured", ErrConfig, r.ProviderName)
		}
	}
	for _, x := range r.RequiresAny {
		if len(x.RequiresAny) > 0 {
			return fmt.Errorf("%w: nested requires_any", ErrUnsupported)
		}
		if err := a.checkRequirement(x); err != nil {
			return err
		}
	}
	return nil
}

// parseJWKS reads a JWKS of RSA keys; any other key type is refused rather than skipped.
func parseJWKS(data []byte) ([]jwk, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Alg, N, E string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: Jwks is an invalid JSON: %v", ErrConfig, err)
	}
	var out []jwk
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			return nil, fmt.Errorf("%w: JWKS key type %q", ErrUnsupported, k.Kty)
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: Jwks RSA [n] or [e] field is missing or has a parse error", ErrConfig)
		}
		out = append(out, jwk{kid: k.Kid, alg: k.Alg, key: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: Jwks doesn't have any valid public key", ErrConfig)
	}
	return out, nil
}

// jwtAuthnDecode is Filter::decodeHeaders: find the rule, verify, and either go on (with the
// payload in the dynamic metadata) or answer 401/403 (Filter::onComplete). It reports
// whether the request was answered.
func (f *filter) jwtAuthnDecode() bool {
	a := f.e.cfg.jwt
	if a == nil {
		return false
	}
	path, _ := f.reqHeaders.get(":path")
	for _, rule := range a.rules {
		if !strings.HasPrefix(path, rule.Prefix) {
			continue
		}
		payload := map[string]*structpb.Struct{}
		status := a.verify(rule.Requires, nil, f.reqHeaders, payload, time.Now())
		if status != "" {
			f.jwtAuthnRefuse(status)
			return true
		}
		if len(payload) > 0 {
			if f.dynMeta == nil {
				f.dynMeta = map[string]*structpb.Struct{}
			}
			st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
			for name, p := range payload {
				st.Fields[name] = structpb.NewStructValue(p)
			}
			f.dynMeta[JWTAuthnNamespace] = st
		}
		return false
	}
	return false
}

// jwtAuthnRefuse is onComplete's local reply: 403 for audiences, 401 otherwise, the status
// as the body, WWW-Authenticate with the request's URI (Http::Utility::buildOriginalUri,
// path cut at 256 bytes) and, unless the token was missing, error="invalid_token".
func (f *filter) jwtAuthnRefuse(status string) {
	code := http.StatusUnauthorized
	if status == jwtAudience {
		code = http.StatusForbidden
	}
	scheme, _ := f.reqHeaders.get(":scheme")
	host, _ := f.reqHeaders.get(":authority")
	path, _ := f.reqHeaders.get(":path")
	path, _, _ = strings.Cut(path, "?")
	if len(path) > 256 {
		path = path[:256]
	}
	www := `Bearer realm="` + scheme + "://" + host + path + `"`
	if status != jwtMissed {
		www += `, error="invalid_token"`
	}
	f.reply = &localReply{status: code, body: []byte(status), headers: map[string]string{"www-authenticate": www},
		details: "jwt_authn_access_denied{" + strings.ReplaceAll(status, " ", "_") + "}"}
}

// verify runs one requirement (verifier.cc) and returns "" for Ok or the failing status.
// parents are the providers of an enclosing requires_any, whose locations an allow_missing
// or allow_missing_or_failed inside it reads (AnyVerifierImpl, innerCreate).
func (a *jwtAuthn) verify(r JWTRequirement, parents []string, h *headerList, payload map[string]*structpb.Struct, now time.Time) string {
	switch {
	case r.ProviderName != "":
		return a.authenticate([]string{r.ProviderName}, true, false, false, h, payload, now)
	case r.AllowMissingOrFailed:
		return a.authenticate(parents, false, true, true, h, payload, now)
	case r.AllowMissing:
		return a.authenticate(parents, false, false, true, h, payload, now)
	case len(r.RequiresAny) > 0:
		// The regular requirements in order, then the one by-pass requirement (an
		// allow_missing_or_failed wins over an allow_missing), with their providers.
		var regular []JWTRequirement
		var bypass *JWTRequirement
		var used []string
		for i, x := range r.RequiresAny {
			switch {
			case x.AllowMissing || x.AllowMissingOrFailed:
				if bypass == nil || bypass.AllowMissing {
					bypass = &r.RequiresAny[i]
				}
			default:
				regular = append(regular, x)
				if x.ProviderName != "" {
					used = append(used, x.ProviderName)
				}
			}
		}
		status := jwtMissed
		for _, x := range regular {
			if status = a.verify(x, nil, h, payload, now); status == "" {
				return ""
			}
		}
		if bypass != nil {
			return a.verify(*bypass, used, h, payload, now)
		}
		return status
	}
	return "" // no requirement
}

// authenticate is AuthenticatorImpl::verify over the tokens of the providers' locations:
// every token must verify (doneWithStatus: a good token beside a bad one is not enough);
// the first failure ends it. byName fixes the provider (a provider_name requirement);
// otherwise each token's provider is the one of its issuer (findByIssuer).
func (a *jwtAuthn) authenticate(names []string, byName, allowFailed, allowMissing bool, h *headerList,
	payload map[string]*structpb.Struct, now time.Time) string {
	type token struct {
		text    string
		header  string
		issuers []string
	}
	var tokens []token
	for _, n := range names {
		p := a.providers[n]
		for _, loc := range p.FromHeaders {
			for _, kv := range h.kv {
				if kv.key != strings.ToLower(loc.Name) {
					continue
				}
				v := kv.value
				if loc.ValuePrefix != "" {
					i := strings.Index(v, loc.ValuePrefix)
					if i < 0 {
						continue
					}
					v = extractJWT(v, i+len(loc.ValuePrefix))
				}
				tokens = append(tokens, token{v, kv.key, []string{p.Issuer}})
			}
		}
	}
	if len(tokens) == 0 {
		if allowMissing || allowFailed {
			return ""
		}
		return jwtMissed
	}
	for i := len(tokens) - 1; i >= 0; i-- { // startVerify takes tokens_.back() first
		t := tokens[i]
		var p *jwtProvider
		if byName {
			p = a.providers[names[0]]
		}
		status, claims := a.verifyToken(t.text, t.issuers, p, now)
		if status != "" {
			if allowFailed {
				return ""
			}
			return status
		}
		if claims.p != nil && !claims.p.Forward {
			h.remove(t.header)
		}
		if claims.p != nil && claims.p.PayloadInMetadata != "" {
			payload[claims.p.PayloadInMetadata] = claims.payload
		}
	}
	return ""
}

// extractJWT is ExtractorImpl::extractJWT: from the first base64url character (or dot)
// after the prefix to the end of the value.
func extractJWT(v string, after int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	i := strings.IndexAny(v[after:], chars)
	if i < 0 {
		return v
	}
	return v[after+i:]
}

type verified struct {
	p       *jwtProvider
	payload *structpb.Struct
}

// verifyToken is AuthenticatorImpl::startVerify and verifyKey for one token: parse, issuer,
// time, audiences, then the signature against the provider's JWKS.
func (a *jwtAuthn) verifyToken(text string, issuers []string, p *jwtProvider, now time.Time) (string, verified) {
	parts := strings.Split(text, ".")
	if len(parts) != 3 {
		return jwtBadFormat, verified{}
	}
	var hdr struct{ Alg, Kid string }
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &hdr) != nil {
		return jwtHeaderParseError, verified{}
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err == nil {
		err = json.Unmarshal(pb, &claims)
	}
	st, err2 := structpb.NewStruct(claims)
	if err != nil || err2 != nil {
		return jwtPayloadParse, verified{}
	}
	iss, _ := claims["iss"].(string)
	if !issuerAllowed(issuers, iss) {
		return jwtUnknownIssuer, verified{}
	}
	if p == nil {
		for _, cand := range a.providers {
			if cand.Issuer == iss {
				p = cand
				break
			}
		}
		if p == nil {
			return jwtUnknownIssuer, verified{}
		}
	}
	if s := checkTimes(claims, now, p.ClockSkew); s != "" {
		return s, verified{}
	}
	if !audienceAllowed(p.Audiences, claims["aud"]) {
		return jwtAudience, verified{}
	}
	if s := verifySignature(p.keys, hdr.Alg, hdr.Kid, parts); s != "" {
		return s, verified{}
	}
	return "", verified{p: p, payload: st}
}

func issuerAllowed(issuers []string, iss string) bool {
	for _, i := range issuers {
		if i == "" || i == iss {
			return true
		}
	}
	return false
}

// checkTimes is jwt_verify_lib's verifyTimeConstraint.
func checkTimes(claims map[string]any, now time.Time, skew time.Duration) string {
	t := now.Unix()
	s := int64(skew / time.Second)
	if nbf, ok := claims["nbf"].(float64); ok && t+s < int64(nbf) {
		return jwtNotYetValid
	}
	if exp, ok := claims["exp"].(float64); ok && t-s > int64(exp) {
		return jwtExpired
	}
	return ""
}

// audienceAllowed is JwksData::areAudiencesAllowed: no configured audiences allows all;
// otherwise one of the token's (a string or a list) must be configured.
func audienceAllowed(allowed []string, aud any) bool {
	if len(allowed) == 0 {
		return true
	}
	var got []string
	switch v := aud.(type) {
	case string:
		got = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				got = append(got, s)
			}
		}
	}
	for _, g := range got {
		for _, a := range allowed {
			if strings.TrimSuffix(g, "/") == strings.TrimSuffix(a, "/") {
				return true
			}
		}
	}
	return false
}

// verifySignature checks an RS256/384/512 signature with the keys of the token's kid (all
// keys when it names none).
func verifySignature(keys []jwk, alg, kid string, parts []string) string {
	hashes := map[string]crypto.Hash{"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512}
	h, ok := hashes[alg]
	if !ok {
		return jwksKidAlgMismatch
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return jwtVerifyFail
	}
	signed := []byte(parts[0] + "." + parts[1])
	var digest []byte
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(signed)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(signed)
		digest = d[:]
	default:
		d := sha512.Sum512(signed)
		digest = d[:]
	}
	matched := false
	for _, k := range keys {
		if (kid != "" && k.kid != kid) || (k.alg != "" && k.alg != alg) {
			continue
		}
		matched = true
		if rsa.VerifyPKCS1v15(k.key, h, digest, sig) == nil {
			return ""
		}
	}
	if !matched {
		return jwksKidAlgMismatch
	}
	return jwtVerifyFail
}
