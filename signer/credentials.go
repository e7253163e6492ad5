package signer

import (
	"context"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Kind names a kind of principal.
type Kind string

// The principals ocisigner signs as.
const (
	KindAPIKey   Kind = "api_key"
	KindSession  Kind = "security_token"
	KindInstance Kind = "instance_principal"
	KindResource Kind = "resource_principal"
	KindWorkload Kind = "oke_workload_identity"
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
}

// Expiry returns when the credentials stop working, or zero if they do not expire.
func (c *Credentials) Expiry() time.Time {
	if c.Token == nil {
		return time.Time{}
	}
	return c.Token.Expiry
}

// A Source supplies the credentials to sign with now. Implementations are
// safe for concurrent use and cheap to call per request: they cache, and
// notice changes on disk without a restart.
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

// options configure sources built from a config.
type options struct {
	log   *slog.Logger
	clock func() time.Time

	client        *http.Client
	authBaseURL   string // instead of https://auth.<region>.<realm domain>
	refresh       bool   // refresh session tokens before they expire
	refreshMargin time.Duration
	writeBack     bool
	metadataURL   string
	workloadURL   string
	saTokenPath   string
	saCAPath      string
	getenv        func(string) string
}

// Option configures OpenConfig and the sources it makes.
type Option func(*options)

// WithLogger sends what the package notices (a moved file, a reload, a
// rejected half-written file) to l.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock replaces time.Now, for tests that need a token to expire.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithHTTPClient sets the client for calls to OCI's auth services.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithAuthBaseURL sends session refreshes and federation requests to base
// (scheme://host[:port]) instead of https://auth.<region>.<realm domain>.
func WithAuthBaseURL(base string) Option { return func(o *options) { o.authBaseURL = base } }

// WithSessionRefresh turns session-token auto-refresh on or off (on by
// default) and sets how long before expiry it happens: margin, or a fifth of
// the token's lifetime, whichever is larger. A zero margin keeps the default.
func WithSessionRefresh(enabled bool, margin time.Duration) Option {
	return func(o *options) {
		o.refresh = enabled
		if margin > 0 {
			o.refreshMargin = margin
		}
	}
}

// WithWriteBack makes a refreshed session token also replace the token file
// (atomically, mode 0600), so the OCI CLI on the same folder sees it.
func WithWriteBack(on bool) Option { return func(o *options) { o.writeBack = on } }

// WithMetadataBaseURL replaces http://169.254.169.254/opc/v2 for the
// instance principal.
func WithMetadataBaseURL(u string) Option { return func(o *options) { o.metadataURL = u } }

// WithWorkloadIdentity replaces the OKE proxymux endpoint and the service
// account token and CA paths; empty values keep the defaults.
func WithWorkloadIdentity(endpoint, tokenPath, caPath string) Option {
	return func(o *options) {
		if endpoint != "" {
			o.workloadURL = endpoint
		}
		if tokenPath != "" {
			o.saTokenPath = tokenPath
		}
		if caPath != "" {
			o.saCAPath = caPath
		}
	}
}

// WithGetenv replaces os.Getenv for the principals configured by environment.
func WithGetenv(getenv func(string) string) Option { return func(o *options) { o.getenv = getenv } }

// Defaults of the principals' options.
const (
	DefaultRefreshMargin   = 5 * time.Minute
	DefaultMetadataBaseURL = "http://169.254.169.254/opc/v2"
	DefaultSATokenPath     = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultSACAPath        = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

func newOptions(opts []Option) options {
	o := options{log: slog.New(slog.DiscardHandler), clock: time.Now,
		client: &http.Client{Timeout: 30 * time.Second}, refresh: true, refreshMargin: DefaultRefreshMargin,
		metadataURL: DefaultMetadataBaseURL, saTokenPath: DefaultSATokenPath, saCAPath: DefaultSACAPath, getenv: os.Getenv}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// fileStamp identifies a version of a file without reading it: the same
// file (inode), size and modification time.
type fileStamp = os.FileInfo

func stat(paths []string) ([]fileStamp, bool) {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, false
		}
		out[i] = fi
	}
	return out, true
}

func sameStamps(a, b []fileStamp) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}

// loader reads credentials from files in two steps, so that the files can be
// stamped between finding them and reading them: a change that lands while
// they are read is then noticed on the next call.
type loader struct {
	resolve func() ([]string, error)
	read    func(paths []string) (*Credentials, error)
}

// fileSource serves credentials read from files, rereading them whenever
// one changes (a rename, a rewrite) and keeping the last good credentials
// when the new files do not make a usable pair.
type fileSource struct {
	profile string
	load    loader
	opts    options

	mu    sync.Mutex // serialises reloads
	state atomic.Pointer[fileState]
}

type fileState struct {
	paths  []string
	stamps []fileStamp // of the files the last attempt read; nil forces a reload
	good   *Credentials
	err    error // why the last attempt failed, if it did
}

func newFileSource(profile string, l loader, o options) *fileSource {
	return &fileSource{profile: profile, load: l, opts: o}
}

// Credentials implements Source.
func (s *fileSource) Credentials(ctx context.Context) (*Credentials, error) {
	if st := s.state.Load(); st != nil && s.current(st) {
		return s.result(st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state.Load()
	if st != nil && s.current(st) {
		return s.result(st)
	}
	next := s.reload(st)
	s.state.Store(next)
	return s.result(next)
}

func (s *fileSource) current(st *fileState) bool {
	if st.stamps == nil {
		return false
	}
	now, ok := stat(st.paths)
	return ok && sameStamps(st.stamps, now)
}

func (s *fileSource) reload(prev *fileState) *fileState {
	next := &fileState{}
	if prev != nil {
		next.good, next.paths = prev.good, prev.paths
	}
	paths, err := s.load.resolve()
	var creds *Credentials
	if err == nil {
		next.paths = paths
		before, ok := stat(paths)
		creds, err = s.load.read(paths)
		if after, ok2 := stat(paths); ok && ok2 && sameStamps(before, after) {
			// Unchanged while read: remember the version so it is not reread
			// per request. Otherwise leave stamps nil and read again next call.
			next.stamps = before
		}
	}
	if err != nil {
		err = withProfile(err, s.profile)
		next.err = err
		if next.good != nil {
			s.opts.log.Warn("new credential files are not usable; keeping the last good credentials",
				"profile", s.profile, "error", err.Error())
		}
		return next
	}
	next.good = creds
	if prev != nil && prev.good != nil {
		s.opts.log.Info("credentials reloaded from disk", "profile", s.profile, "kind", string(creds.Kind),
			"key_id", MaskKeyID(creds.KeyID))
	}
	return next
}

func (s *fileSource) result(st *fileState) (*Credentials, error) {
	if st.good == nil {
		return nil, st.err
	}
	if tok := st.good.Token; tok != nil && tok.Expired(s.opts.clock()) {
		return nil, tokenExpired(s.profile, st.good.Kind, st.paths, tok, st.err, s.opts.clock())
	}
	return st.good, nil
}

func tokenExpired(profile string, kind Kind, paths []string, tok *Token, newer error, now time.Time) error {
	e := &Error{Kind: ErrTokenExpired, Profile: profile, Token: tok}
	e.Detail = fmt.Sprintf("session token expired at %s", tok.Expiry.UTC().Format("2006-01-02 15:04:05 UTC"))
	if len(paths) > 0 {
		e.Path = paths[len(paths)-1]
	}
	if kind == KindResource {
		e.Detail = fmt.Sprintf("resource principal token expired at %s", tok.Expiry.UTC().Format("2006-01-02 15:04:05 UTC"))
		e.Hint = "whatever provides " + EnvRPST + " must renew it"
	} else if !tok.SessionEnd.IsZero() && !now.Before(tok.SessionEnd) {
		e.Hint = fmt.Sprintf("the session ended at %s; run `oci session authenticate --profile-name %s`",
			tok.SessionEnd.UTC().Format("2006-01-02 15:04 UTC"), profile)
	} else {
		e.Hint = fmt.Sprintf("run `oci session refresh --profile %s` (or `oci session authenticate --profile-name %s` once the session has ended)", profile, profile)
	}
	if newer != nil {
		// The cause, not the hint: it names files, which only the log shows.
		e.Err = fmt.Errorf("the files on disk now are not usable either: %w", newer)
	}
	return e
}

// sessionLoader reads a session profile: the session key and the token file.
func sessionLoader(p *Profile, o options) loader {
	return loader{
		resolve: func() ([]string, error) {
			keyPath, err := resolveLogged(p, "key_file", "key file", o)
			if err != nil {
				return nil, err
			}
			tokenPath, err := resolveLogged(p, "security_token_file", "security token file", o)
			if err != nil {
				return nil, err
			}
			return []string{keyPath, tokenPath}, nil
		},
		read: func(paths []string) (*Credentials, error) {
			keyPath, tokenPath := paths[0], paths[1]
			key, err := readKey(keyPath, p.Passphrase())
			if err != nil {
				return nil, err
			}
			raw, err := readFile(tokenPath, "security token file")
			if err != nil {
				return nil, err
			}
			c, err := NewSessionCredentials(string(raw), key)
			if err != nil {
				if e, ok := err.(*Error); ok {
					e.Path = tokenPath
					if e.Kind == ErrKeyMismatch {
						e.Detail = fmt.Sprintf("security token %s was issued for another key than %s", tokenPath, keyPath)
						e.Hint = "a rotation may be half done; run `oci session authenticate --profile-name " + p.Name + "` if this persists"
					}
				}
				return nil, err
			}
			c.Profile, c.Region = p.Name, p.Get("region")
			if t := p.Get("tenancy"); t != "" {
				c.Tenancy = t
			}
			return c, nil
		},
	}
}

// apiKeyLoader reads an API-key profile and checks the key against the
// profile's fingerprint, so a wrong key is an error now instead of a 401 later.
func apiKeyLoader(p *Profile, o options) loader {
	return loader{
		resolve: func() ([]string, error) {
			for _, k := range []string{"tenancy", "user", "fingerprint"} {
				if p.Get(k) == "" {
					return nil, &Error{Kind: ErrConfig, Path: p.ConfigPath,
						Detail: fmt.Sprintf("API-key profile has no %s", k),
						Hint:   "add " + k + "=... to the profile, or security_token_file=... for a session profile"}
				}
			}
			keyPath, err := resolveLogged(p, "key_file", "key file", o)
			if err != nil {
				return nil, err
			}
			return []string{keyPath}, nil
		},
		read: func(paths []string) (*Credentials, error) {
			key, err := readKey(paths[0], p.Passphrase())
			if err != nil {
				return nil, err
			}
			fp := Fingerprint(&key.PublicKey)
			if want := p.Get("fingerprint"); fp != want {
				return nil, &Error{Kind: ErrFingerprintMismatch, Path: paths[0],
					Detail: fmt.Sprintf("key %s has fingerprint %s but the profile says %s", paths[0], fp, want),
					Hint:   "point key_file at the key you uploaded, or set fingerprint to the uploaded key's"}
			}
			return &Credentials{
				KeyID:   p.Get("tenancy") + "/" + p.Get("user") + "/" + fp,
				Key:     key,
				Kind:    KindAPIKey,
				Profile: p.Name,
				Region:  p.Get("region"),
				Tenancy: p.Get("tenancy"),
			}, nil
		},
	}
}

func readKey(path, passphrase string) (*rsa.PrivateKey, error) {
	data, err := readFile(path, "key file")
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(data, []byte(passphrase))
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Path = path
		}
		return nil, err
	}
	return key, nil
}

func resolveLogged(p *Profile, key, what string, o options) (string, error) {
	written := p.Get(key)
	path, moved, err := resolvePath(p.ConfigPath, written, what)
	if err != nil {
		return "", withProfile(err, p.Name)
	}
	if moved {
		o.log.Info("file named in the config not found where written; using the one under the config folder",
			"profile", p.Name, "key", key, "written", written, "using", path)
	}
	return path, nil
}

// tokenPath is the token file a session source last read, or "".
func (s *fileSource) tokenPath() string {
	if st := s.state.Load(); st != nil && len(st.paths) == 2 {
		return st.paths[1]
	}
	return ""
}
