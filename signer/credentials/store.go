package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/ocisigner/ocisigner/signer"
)

// Settings say where a Store's credentials come from.
type Settings struct {
	// ConfigPath is the OCI config file (see ConfigPath).
	ConfigPath string
	// DefaultProfile is the profile a request gets when it names none.
	DefaultProfile string
	// Principal, when set, answers DefaultProfile with that principal
	// instead of the config; the config's other profiles stay available
	// when the file exists.
	Principal string
	// SessionToken and Passphrase, when set, are DefaultProfile's session
	// token and key passphrase as values (EnvSecurityToken, EnvPassphrase).
	SessionToken, Passphrase string
	// Region, when set, is DefaultProfile's region instead of the
	// config's, as the OCI CLI's --region and OCI_CLI_REGION are.
	Region string
	// Auth, when set, is how DefaultProfile signs whatever the config
	// says, as the OCI CLI's --auth: signer.KindSession (security_token)
	// or signer.KindAPIKey (api_key). Principals are Principal's.
	Auth signer.Kind
	// TokenExchange are the settings of PrincipalTokenExchange.
	TokenExchange *TokenExchange
}

// Store is every profile a process signs for, by name, and the one
// background loop that keeps their credentials fresh. Close ends it.
type Store struct {
	loop      *refreshLoop
	cfg       *configFile // nil without a config file (a principal alone)
	name      string      // the default profile, when a principal answers it
	principal source      // its cache nil without a principal
}

// Open opens the credentials s describes. With a principal, a config file
// that does not exist is not an error.
func Open(s Settings, opts ...Option) (*Store, error) {
	o := newOptions(opts)
	if s.SessionToken != "" || s.Passphrase != "" {
		o.secretsFor, o.tokenValue, o.passphrase = s.DefaultProfile, s.SessionToken, s.Passphrase
	}
	switch s.Auth {
	case "", signer.KindSession, signer.KindAPIKey:
	default:
		return nil, fmt.Errorf("auth %q: a profile signs as %s or %s; principals are chosen with Principal", s.Auth, signer.KindSession, signer.KindAPIKey)
	}
	if s.Region != "" {
		if _, err := checkRegion(s.Region, s.DefaultProfile, "", "the region given"); err != nil {
			return nil, err
		}
	}
	o.override.profile, o.override.region, o.override.kind = s.DefaultProfile, s.Region, s.Auth
	o.tokenExchange = s.TokenExchange
	st := &Store{loop: newLoop(o.clock, o.log), name: s.DefaultProfile}
	if err := st.open(s, &o); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func (st *Store) open(s Settings, o *options) error {
	if s.Principal != "" {
		kind, ok := principalKinds[s.Principal]
		if !ok {
			return fmt.Errorf("principal %q: want %s, %s, %s or %s", s.Principal, PrincipalInstance, PrincipalResource, PrincipalWorkload, PrincipalTokenExchange)
		}
		f, remote, err := newFetcher(kind, nil, o)
		if err != nil {
			return err
		}
		st.principal = newSource(s.DefaultProfile, f, o, st.loop, remote)
		if _, err := os.Stat(s.ConfigPath); s.ConfigPath == "" || errors.Is(err, fs.ErrNotExist) {
			return nil // the principal stands alone
		} else if err != nil {
			return err
		}
	}
	cfg, err := openConfig(s.ConfigPath, *o, st.loop)
	st.cfg = cfg
	return err
}

// Source returns the named profile's credentials.
func (s *Store) Source(profile string) signer.Source {
	if s.principal.c != nil && profile == s.name {
		return s.principal
	}
	if s.cfg != nil {
		return s.cfg.source(profile)
	}
	return notFound(profile, "only the default profile "+s.name+" is configured (by a principal)")
}

// Names lists the profiles the store signs for, sorted.
func (s *Store) Names() []string {
	var names []string
	if s.principal.c != nil {
		names = append(names, s.name)
	}
	if s.cfg != nil {
		for _, n := range s.cfg.names() {
			if s.principal.c == nil || n != s.name {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// earlyRefreshInterval is the least time between two early refreshes of a
// profile (Store.RefreshEarly), however many refusals ask for them: as
// long as the refresh margin, so that a flood of 401s costs the issuer no
// more than one request per profile every few minutes.
const earlyRefreshInterval = DefaultRefreshMargin

// RefreshEarly asks the background loop to fetch profile's credentials
// anew now, ahead of their schedule: for credentials OCI refused (a 401),
// which their issuer may have revoked or rotated before they expire. Only
// credentials that can be fetched anew take part: session tokens
// (refreshed at the auth service, when refresh is on), instance, resource
// and workload principals, and token exchange; API keys, and a profile
// that has never had credentials, do not. It never blocks, and asks at
// most once every five minutes for a profile, by the store's clock.
// It reports whether it asked.
func (s *Store) RefreshEarly(profile string) bool {
	var c *cache[*signer.Credentials]
	switch {
	case s.principal.c != nil && profile == s.name:
		c = s.principal.c
	case s.cfg != nil:
		if e, err := s.cfg.entry(profile); err == nil {
			c = e.c
		}
	}
	if c == nil {
		return false
	}
	if st := c.st.Load(); st == nil || st.e == nil || st.e.value.Kind == signer.KindAPIKey {
		return false
	}
	return c.refreshEarly(earlyRefreshInterval)
}

// Close stops the loop: no refresh runs after it returns.
func (s *Store) Close() error { return s.loop.Close() }
