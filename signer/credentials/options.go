package credentials

import (
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials/internal/hook"
)

// options configure the sources of a Store.
type options struct {
	log      *slog.Logger
	clock    Clock
	observe  func(RefreshEvent)
	client   *http.Client
	authBase string // instead of https://auth.<region>.<realm domain>

	refresh       bool // refresh session tokens before they expire
	refreshMargin time.Duration
	writeBack     bool
	metadataURL   string
	workloadURL   string
	saTokenPath   string
	saCAPath      string
	getenv        func(string) string

	// override is what the command line says of one profile (its region,
	// its kind) instead of the config.
	override struct {
		profile, region string
		kind            signer.Kind
	}

	secretsFor string // the profile tokenValue and passphrase are for
	tokenValue string
	passphrase string

	tokenExchange *TokenExchange // the settings of PrincipalTokenExchange
}

// Option configures the sources.
type Option func(*options)

// WithLogger sends what the package notices (a moved file, a reload, a
// rejected half-written file, a failed refresh) to l.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock replaces the system clock: expiry is judged and refreshes are
// timed by c.
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithObserver receives an event for every background fetch: metrics count
// them, tests wait for them.
func WithObserver(f func(RefreshEvent)) Option { return func(o *options) { o.observe = f } }

// WithAuthBaseURL sends session refreshes and federation requests to base
// (scheme://host[:port]) instead of https://auth.<region>.<realm domain>.
func WithAuthBaseURL(base string) Option { return func(o *options) { o.authBase = base } }

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

func init() {
	hook.WorkloadIdentity = func(endpoint, tokenPath, caPath string) any {
		return withWorkloadIdentity(endpoint, tokenPath, caPath)
	}
}

// withWorkloadIdentity replaces the OKE proxymux endpoint and the service
// account token and CA paths; empty values keep the defaults. Only tests
// move them, through credentialstest.WorkloadIdentity.
func withWorkloadIdentity(endpoint, tokenPath, caPath string) Option {
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

// Defaults of the options.
const (
	DefaultRefreshMargin   = 5 * time.Minute
	DefaultMetadataBaseURL = "http://169.254.169.254/opc/v2"
	defaultSATokenPath     = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	defaultSACAPath        = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

func newOptions(opts []Option) options {
	o := options{log: slog.New(slog.DiscardHandler), clock: systemClock{},
		client: &http.Client{Timeout: fetchTimeout}, refresh: true, refreshMargin: DefaultRefreshMargin,
		metadataURL: DefaultMetadataBaseURL, saTokenPath: defaultSATokenPath, saCAPath: defaultSACAPath, getenv: os.Getenv}
	for _, f := range opts {
		f(&o)
	}
	return o
}
