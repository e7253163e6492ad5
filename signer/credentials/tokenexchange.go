package credentials

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials/internal/hook"
)

// The token exchange of OCI IAM identity domains ("Token Exchange Grant
// Type: Exchanging a JSON Web Token for a UPST"), as oci-go-sdk v65.130.0
// makes it in common/auth/federation_client.go
// (tokenExchangeFederationClient.newTokenExchangeToken, called from
// workload_identity_federation.go TokenExchangeConfigurationProviderFromIssuer):
// a form-encoded POST to <domain URL>/oauth2/v1/token with HTTP Basic client
// authentication (base64 of client_id ":" client_secret), grant_type
// urn:ietf:params:oauth:grant-type:token-exchange, requested_token_type
// urn:oci:token-type:oci-upst, subject_token (the JWT), subject_token_type
// jwt and public_key (standard base64 of the DER SubjectPublicKeyInfo of a
// fresh RSA key, utils.go privateToPublicDERBase64); the answer is
// {"token": "<UPST>"}, used as keyId ST$<UPST> with that key. The SDK does
// not retry a 4xx, and neither does a request here: the loop retries in the
// background with backoff, so that a trust fixed in the console takes
// effect without a restart. signertest.TokenExchange plays the endpoint.
const (
	tokenEndpointPath      = "/oauth2/v1/token"
	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeUPST          = "urn:oci:token-type:oci-upst"
	subjectTokenTypeJWT    = "jwt"
)

// Environment variables the token-exchange principal reads secrets from
// when its settings give neither a file nor a value: secrets stay off the
// command line (and out of `ps`).
const (
	EnvClientSecret = "OCISIGNER_CLIENT_SECRET"
	EnvSubjectToken = "OCISIGNER_SUBJECT_TOKEN"
)

// subjectTokenPollInterval is how often the background loop reads the
// subject token file while the current UPST is valid: a file the platform
// rotated is exchanged within this long, and no request ever waits for it.
const subjectTokenPollInterval = hook.SubjectTokenPollInterval

// TokenExchange are the settings of the token-exchange principal: a JWT of
// an identity provider the identity domain trusts (a Kubernetes projected
// service-account token, a GitHub Actions OIDC token) is exchanged for a
// user principal session token (UPST) bound to a fresh in-memory RSA-2048
// session key, renewed before it expires and again whenever the platform
// rotates the subject token file.
type TokenExchange struct {
	// DomainURL is the identity domain's URL,
	// https://idcs-<id>.identity.oraclecloud.com; its token endpoint
	// (…/oauth2/v1/token) is accepted too. http:// only for loopback.
	DomainURL string
	// ClientID is the OAuth client (a confidential application of the
	// domain) that authenticates the exchange.
	ClientID string
	// ClientSecret is the client's secret, or ClientSecretFile a file
	// holding it, read again at each exchange (a mounted Kubernetes Secret
	// is updated in place). With neither, EnvClientSecret.
	ClientSecret     string
	ClientSecretFile string
	// SubjectTokenFile is the file the platform keeps a current JWT in; it
	// is read again before each exchange and polled for rotation. It may
	// not exist yet when the process starts. SubjectToken is a JWT given as
	// a value instead. With neither, EnvSubjectToken.
	SubjectTokenFile string
	SubjectToken     string
	// Region is the region the credentials sign for (identifier or short code).
	Region string
}

// settingNames say how an operator sets each setting, for the errors that
// ask for one: flags for the principal, keys for a config profile.
type settingNames struct{ url, clientID, secret, subject, region string }

var (
	optionNames = settingNames{url: "--token-exchange-url", clientID: "--client-id",
		secret: "--client-secret-file or " + EnvClientSecret, subject: "--subject-token-file or " + EnvSubjectToken, region: "--region"}
	profileNames = settingNames{url: "domain_url", clientID: "client_id", secret: "client_secret_file",
		subject: "subject_token_file", region: "region"}
)

func newTokenExchangeFetcher(o *options) (*tokenExchange, error) {
	name := string(signer.KindTokenExchange)
	if o.tokenExchange == nil {
		return nil, &signer.Error{Kind: signer.ErrConfig, Profile: name, Detail: "the token-exchange principal has no settings",
			Hint: "set " + optionNames.url + ", " + optionNames.clientID + ", " + optionNames.secret + ", " + optionNames.subject + " and " + optionNames.region}
	}
	tx := *o.tokenExchange
	if tx.ClientSecret == "" && tx.ClientSecretFile == "" {
		tx.ClientSecret = o.getenv(EnvClientSecret)
	}
	if tx.SubjectToken == "" && tx.SubjectTokenFile == "" {
		tx.SubjectToken = o.getenv(EnvSubjectToken)
	}
	f, err := tx.fetcher(name, o, optionNames)
	if err != nil {
		return nil, err
	}
	if tx.ClientSecretFile != "" {
		f.secretPath = fixedPath(tx.ClientSecretFile)
	}
	if tx.SubjectTokenFile != "" {
		f.subjectPath = fixedPath(tx.SubjectTokenFile)
	}
	return f, nil
}

// newProfileTokenExchange reads a profile with
// authentication_type=token_exchange. Its files are named relative to the
// config's folder, as key_file is.
func newProfileTokenExchange(p *profile, o *options) (*tokenExchange, error) {
	tx := TokenExchange{DomainURL: p.Get("domain_url"), ClientID: p.Get("client_id"),
		ClientSecretFile: p.Get("client_secret_file"), SubjectTokenFile: p.Get("subject_token_file"), Region: p.Get("region")}
	f, err := tx.fetcher(p.Name, o, profileNames)
	if err != nil {
		return nil, err
	}
	f.secretPath = profilePath(p, "client_secret_file", "client secret file", o)
	f.subjectPath = profilePath(p, "subject_token_file", "subject token file", o)
	return f, nil
}

func fixedPath(p string) func() string { return func() string { return p } }

// profilePath resolves a file a profile names each time it is read, since
// the file may appear later. A file not found anywhere is reported at the
// path as written (against the config's folder), which the read then says
// is missing.
func profilePath(p *profile, key, what string, o *options) func() string {
	var (
		mu   sync.Mutex
		last string
	)
	written := p.Get(key)
	return func() string {
		path, moved, err := resolvePath(p, key, what)
		if err != nil {
			return p.direct(written)
		}
		mu.Lock()
		defer mu.Unlock()
		if moved && path != last {
			o.log.Info("file named in the config not found where written; using the one under the config folder",
				"profile", p.Name, "key", key, "written", written, "using", path)
		}
		last = path
		return path
	}
}

// fetcher checks the settings and makes the fetcher, without its files.
func (tx TokenExchange) fetcher(name string, o *options, names settingNames) (*tokenExchange, error) {
	fail := func(detail, hint string) error {
		return &signer.Error{Kind: signer.ErrConfig, Profile: name, Detail: "token exchange: " + detail, Hint: hint}
	}
	if tx.DomainURL == "" {
		return nil, fail("no identity domain URL", "set "+names.url+" to the domain's URL, https://idcs-<id>.identity.oraclecloud.com")
	}
	tokenURL, err := tokenEndpoint(tx.DomainURL)
	if err != nil {
		return nil, fail(err.Error(), "set "+names.url+" to the domain's URL, https://idcs-<id>.identity.oraclecloud.com")
	}
	if tx.ClientID == "" {
		return nil, fail("no OAuth client ID", "set "+names.clientID+" to the client ID of the domain's confidential application")
	}
	switch {
	case tx.ClientSecret != "" && tx.ClientSecretFile != "":
		return nil, fail("both a client secret and a client secret file", "give one")
	case tx.ClientSecret == "" && tx.ClientSecretFile == "":
		return nil, fail("no client secret", "set "+names.secret)
	case tx.SubjectToken != "" && tx.SubjectTokenFile != "":
		return nil, fail("both a subject token and a subject token file", "give one")
	case tx.SubjectToken == "" && tx.SubjectTokenFile == "":
		return nil, fail("no subject token", "set "+names.subject+": the identity provider's JWT to exchange")
	case tx.Region == "":
		return nil, fail("no region", "set "+names.region+" to the region to sign for, e.g. us-ashburn-1")
	}
	region, err := checkRegion(tx.Region, name, "", names.region)
	if err != nil {
		return nil, err
	}
	return &tokenExchange{o: o, name: name, tokenURL: tokenURL, clientID: tx.ClientID, secret: tx.ClientSecret,
		subject: strings.TrimSpace(tx.SubjectToken), region: region}, nil
}

// tokenEndpoint turns the identity domain's URL into its token endpoint.
// A client secret crosses the network only over TLS.
func tokenEndpoint(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("identity domain URL %q is not an https:// URL", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return "", fmt.Errorf("identity domain URL %q is http://: the client secret would cross the network in clear; use https://", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("identity domain URL %q has credentials, a query or a fragment", u.Redacted())
	}
	if p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), tokenEndpointPath); p != "" {
		return "", fmt.Errorf("identity domain URL %q has the path %q: give the domain's URL alone", raw, u.Path)
	}
	return u.Scheme + "://" + u.Host + tokenEndpointPath, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// tokenExchange is the fetcher of the token-exchange principal.
type tokenExchange struct {
	o        *options
	name     string // the profile, or "token_exchange" for the principal
	tokenURL string
	clientID string
	region   string
	// The secret and the subject token: a value, or a file read at each use.
	secret      string
	secretPath  func() string
	subject     string
	subjectPath func() string

	mu         sync.Mutex // guards what follows (the cache already fetches one at a time)
	cur        *signer.Credentials
	curSubject [sha256.Size]byte // the subject token cur was exchanged for
	renewAt    time.Time
	refused    *exchangeRefusal
}

// exchangeRefusal remembers the last refused exchange, so that requests
// arriving while nothing valid is left do not each ask the identity domain
// the question it just answered no to. The loop keeps retrying.
type exchangeRefusal struct {
	inputs [sha256.Size]byte // of the subject token and the client secret
	err    error
}

func (t *tokenExchange) fetch(ctx context.Context, background bool) (*entry[*signer.Credentials], error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.o.clock.Now()
	// Only the loop calls while the UPST is valid (the entry has no change
	// check): a caller never waits on the identity domain for a rotation.
	raw, file, readErr := t.readSubject()
	if t.cur != nil && now.Before(t.cur.Token.Expiry) {
		due := early(ctx) || !now.Before(t.renewAt)
		switch {
		case readErr != nil && !due:
			// The file went away or is being rewritten: sign on with what
			// works, and let the cache retry with backoff.
			return t.entry(now), readErr
		case readErr == nil && sha256.Sum256([]byte(raw)) == t.curSubject && !due:
			return t.entry(now), nil // polled: nothing new
		}
		if readErr == nil && !due {
			t.o.log.Info("subject token changed; exchanging the new one", "profile", t.name, "file", file)
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	subj, err := t.parseSubject(raw, file)
	if err != nil {
		return nil, err
	}
	secret, err := t.readSecret()
	if err != nil {
		return nil, err
	}
	inputs := sha256.Sum256([]byte(raw + "\x00" + secret))
	if !background && t.refused != nil && t.refused.inputs == inputs {
		return nil, t.refused.err
	}
	c, err := t.exchange(ctx, raw, subj, secret, now)
	if err != nil {
		var ee *exchangeError
		if errors.As(err, &ee) && ee.Status >= 300 && ee.Status < 500 { // asking again changes nothing
			t.refused = &exchangeRefusal{inputs: inputs, err: err}
		}
		return nil, err
	}
	t.refused = nil
	// The key's costly first signature, here rather than in a request.
	if why := signer.Prepare(c.Key); why != nil {
		t.o.log.Warn("the new session key signs with crypto/rsa", "profile", t.name, "why", why.Error())
	}
	t.cur, t.curSubject = c, sha256.Sum256([]byte(raw))
	// Renew margin before expiry (as principals do), but never sooner than
	// halfway to it: a UPST shorter than the margin would otherwise be due
	// the moment it arrives and be exchanged again on every turn.
	t.renewAt = renewAt(c.Token, t.o.refreshMargin)
	if half := now.Add(c.Token.Expiry.Sub(now) / 2); t.renewAt.Before(half) {
		t.renewAt = half
	}
	t.o.log.Info("token exchanged", "profile", t.name, "principal", string(c.Kind), "subject_issuer", subj.Issuer,
		"subject", subj.Subject, "expires", c.Token.Expiry.UTC(), "key_id", signer.MaskKeyID(c.KeyID))
	return t.entry(now), nil
}

// entry is the cache entry of the current credentials: renewed ahead of
// expiry, and polled for a rotated subject token file until then.
func (t *tokenExchange) entry(now time.Time) *entry[*signer.Credentials] {
	e := &entry[*signer.Credentials]{value: t.cur, expires: t.cur.Token.Expiry, refreshAt: t.renewAt}
	if t.subjectPath != nil {
		if poll := now.Add(subjectTokenPollInterval); poll.Before(e.refreshAt) {
			e.refreshAt = poll
		}
	}
	return e
}

// subjectFileHint says what writes a subject token file: ocisigner only reads it.
const subjectFileHint = "the subject token file is written by the platform, not by ocisigner: by the kubelet for a projected " +
	"service-account token, by the workflow step that fetches the job's OIDC token on GitHub Actions; once it is there, " +
	"ocisigner exchanges it without a restart"

func (t *tokenExchange) readSubject() (raw, file string, err error) {
	if t.subjectPath == nil {
		return t.subject, "", nil
	}
	file = t.subjectPath()
	data, err := readFile(file, "subject token file")
	if errors.Is(err, signer.ErrFileMissing) {
		return "", file, &signer.Error{Kind: signer.ErrFileMissing, Profile: t.name, Path: file,
			Detail: "subject token file " + file + " does not exist (yet)", Hint: subjectFileHint}
	}
	if err != nil {
		return "", file, withProfile(err, t.name)
	}
	raw = strings.TrimSpace(string(data))
	if raw == "" {
		return "", file, &signer.Error{Kind: signer.ErrTokenMalformed, Profile: t.name, Path: file,
			Detail: "subject token file " + file + " is empty", Hint: subjectFileHint}
	}
	return raw, file, nil
}

// parseSubject reads the subject token's claims without verifying it (the
// identity domain does), to refuse what cannot be a JWT before sending it
// and to say in errors and `token` output which token it was.
func (t *tokenExchange) parseSubject(raw, file string) (*signer.SubjectToken, error) {
	where := "the subject token"
	if file != "" {
		where = "subject token file " + file
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		e := &signer.Error{Kind: signer.ErrTokenMalformed, Profile: t.name, Path: file, Detail: where + " does not hold a JWT", Err: err}
		if strings.HasPrefix(raw, "{") {
			// GitHub's token request answers {"count":…, "value": "<JWT>"}.
			e.Detail = where + " holds JSON, not a JWT"
			e.Hint = "write the token alone: on GitHub Actions, the answer's value field (jq -r .value)"
		}
		return nil, e
	}
	s := &signer.SubjectToken{File: file}
	s.Issuer, _ = claims.GetIssuer()
	s.Subject, _ = claims.GetSubject()
	if aud, err := claims.GetAudience(); err == nil {
		s.Audience = aud
	}
	if iat, err := claims.GetIssuedAt(); err == nil && iat != nil {
		s.IssuedAt = iat.Time
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		s.Expiry = exp.Time
	}
	return s, nil
}

func (t *tokenExchange) readSecret() (string, error) {
	if t.secretPath == nil {
		return t.secret, nil
	}
	file := t.secretPath()
	data, err := readFile(file, "client secret file")
	if err != nil {
		return "", withProfile(err, t.name)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", &signer.Error{Kind: signer.ErrConfig, Profile: t.name, Path: file, Detail: "client secret file " + file + " is empty"}
	}
	return secret, nil
}

// exchangeError is the identity domain's answer to a refused or failed
// token exchange: an OAuth 2.0 error (RFC 6749 section 5.2) when it gave
// one. It is the Err of the *signer.Error a refused exchange returns.
type exchangeError struct {
	Status      int
	Code        string // error, e.g. invalid_grant; "" when the answer had none
	Description string // error_description, or the start of the body
}

func (e *exchangeError) Error() string {
	s := fmt.Sprintf("%d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// exchange asks the identity domain for a UPST bound to a new session key.
func (t *tokenExchange) exchange(ctx context.Context, raw string, subj *signer.SubjectToken, secret string, now time.Time) (*signer.Credentials, error) {
	fail := func(detail, hint string, err error) error {
		return &signer.Error{Kind: signer.ErrAuthService, Profile: t.name, Detail: detail, Hint: hint, Err: err}
	}
	key, _, err := newSessionKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":           {grantTypeTokenExchange},
		"requested_token_type": {tokenTypeUPST},
		"subject_token":        {raw},
		"subject_token_type":   {subjectTokenTypeJWT},
		"public_key":           {base64.StdEncoding.EncodeToString(der)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(t.clientID, secret)
	// Never follow a redirect: the subject token in the body would go to
	// wherever the answer points.
	client := *t.o.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return nil, fail("cannot reach the identity domain at "+t.tokenURL, "ocisigner retries; check the URL and that this host can reach it", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fail("reading the identity domain's answer from "+t.tokenURL, "ocisigner retries", err)
	}
	if resp.StatusCode != http.StatusOK {
		ee := &exchangeError{Status: resp.StatusCode}
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			ee.Description = "redirected to " + remoteText(loc, raw, secret)
			return nil, fail("the identity domain refused the token exchange at "+t.tokenURL, t.refusalHint(ee, subj, now), ee)
		}
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(data, &oe) == nil && oe.Error != "" {
			ee.Code, ee.Description = remoteText(oe.Error, raw, secret), remoteText(oe.Description, raw, secret)
		} else {
			ee.Description = remoteText(string(data), raw, secret)
		}
		return nil, fail("the identity domain refused the token exchange at "+t.tokenURL, t.refusalHint(ee, subj, now), ee)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" {
		return nil, fail("the identity domain answered "+t.tokenURL+" without a token", "check that the URL is the identity domain's", err)
	}
	tok, err := bindToken(strings.TrimPrefix(out.Token, "ST$"), key, "the identity domain")
	if err != nil {
		return nil, fail("token exchange failed", "", err)
	}
	if !now.Before(tok.Expiry) {
		return nil, fail(fmt.Sprintf("the identity domain issued a token that expired at %s, before this machine's time %s",
			tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), "check this machine's clock", nil)
	}
	return &signer.Credentials{KeyID: "ST$" + tok.Raw, Key: key, Kind: signer.KindTokenExchange, Profile: t.name,
		Region: t.region, Tenancy: tok.Tenant, Token: tok, Refreshed: now, Subject: subj}, nil
}

// refusalHint names the identity domain's answer and what fixes it. It is
// what a client of the gateway sees (signer.Error.Public), so it carries
// the answer itself, the subject token's issuer and audience (not secret:
// they are the trust's configuration), and no file path.
func (t *tokenExchange) refusalHint(ee *exchangeError, subj *signer.SubjectToken, now time.Time) string {
	answer := fmt.Sprintf("the identity domain answered %d", ee.Status)
	if ee.Code != "" {
		answer += " " + ee.Code
	}
	if ee.Description != "" {
		answer += fmt.Sprintf(" (%q)", ee.Description)
	}
	var fix string
	switch {
	case ee.Status >= 300 && ee.Status < 400:
		fix = "ocisigner does not follow redirects with a subject token: set the identity domain URL to the domain's own, https://idcs-<id>.identity.oraclecloud.com"
	case ee.Status == http.StatusNotFound || ee.Status == http.StatusMethodNotAllowed:
		fix = "no token endpoint there: the identity domain URL must be the domain's, https://idcs-<id>.identity.oraclecloud.com"
	case ee.Code == "invalid_client" || ee.Status == http.StatusUnauthorized:
		fix = fmt.Sprintf("it does not accept client %s with this secret: check the client ID and secret of the domain's confidential application, and that it is activated", t.clientID)
	case ee.Code == "invalid_grant":
		fix = fmt.Sprintf("it does not accept the subject token of issuer %q for audience %q (subject %q): add the issuer as a trusted identity provider of the domain (an Identity Propagation Trust), check that the trust's audience is one the token holds and that it maps the subject to a user",
			subj.Issuer, strings.Join(subj.Audience, ","), subj.Subject)
		if !subj.Expiry.IsZero() && !now.Before(subj.Expiry) {
			fix = fmt.Sprintf("the subject token expired at %s: whatever writes it must write a fresh one; otherwise %s",
				subj.Expiry.UTC().Format(time.RFC3339), fix)
		}
	case ee.Code == "unauthorized_client" || ee.Code == "unsupported_grant_type":
		fix = fmt.Sprintf("client %s may not use the token exchange grant: allow it for the application and in the Identity Propagation Trust", t.clientID)
	case ee.Status >= 500:
		fix = "the identity domain failed; ocisigner retries"
	default:
		fix = "the request was refused as made: check that the identity domain URL is the domain's, https://idcs-<id>.identity.oraclecloud.com"
	}
	return answer + "; " + fix
}

// maxRemoteText bounds what ocisigner repeats of a service's answer.
const maxRemoteText = 200

var (
	jwtLike    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`)
	opaqueLike = regexp.MustCompile(`[A-Za-z0-9+/_=-]{32,}`)
)

// remoteText is what ocisigner repeats of a token service's answer (an
// identity domain's error_description, an auth service's message, a
// redirect's Location) in errors, which reach the log and, as a hint, a
// gateway's clients: the known secrets sent (a subject token, a client
// secret, a session token) and anything that looks like a token or a key
// removed, control characters dropped, at most maxRemoteText bytes. A
// service that echoes what it was sent must not put it there.
func remoteText(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = jwtLike.ReplaceAllString(s, "[redacted token]")
	s = opaqueLike.ReplaceAllString(s, "[redacted]")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return text.Cut(strings.TrimSpace(s), maxRemoteText)
}
