package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/ocisigner/ocisigner/signer"
)

// Principals a Store can sign its default profile as, instead of reading it
// from the config file.
const (
	PrincipalInstance = "instance"
	PrincipalResource = "resource"
	PrincipalWorkload = "workload"
	// PrincipalTokenExchange exchanges a trusted identity provider's JWT at
	// an OCI IAM identity domain for a user principal session token; its
	// settings come with WithTokenExchange.
	PrincipalTokenExchange = "token-exchange"
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
}

// Store is every profile a process signs for, by name, and the one
// background loop that keeps their credentials fresh. Close ends it.
type Store struct {
	loop      *Loop
	cfg       *ConfigFile // nil without a config file (a principal alone)
	name      string      // the default profile, when a principal answers it
	principal *Source
}

// Open opens the credentials s describes. With a principal, a config file
// that does not exist is not an error.
func Open(s Settings, opts ...Option) (*Store, error) {
	o := newOptions(opts)
	if s.SessionToken != "" || s.Passphrase != "" {
		WithProfileSecrets(s.DefaultProfile, s.SessionToken, s.Passphrase)(&o)
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
	loop, owns := o.ownLoop()
	o.loop = loop // every source below shares it
	st := &Store{loop: loop, name: s.DefaultProfile}
	fail := func(err error) (*Store, error) {
		if owns {
			loop.Close()
		}
		return nil, err
	}
	if s.Principal == "" {
		cfg, err := openConfig(s.ConfigPath, o, loop, false)
		if err != nil {
			return fail(err)
		}
		st.cfg = cfg
		return st, nil
	}
	switch s.Principal {
	case PrincipalInstance:
		st.principal = newSource(s.DefaultProfile, newInstanceFetcher(&o), &o, true)
	case PrincipalResource:
		f, err := newResourceFetcher(&o)
		if err != nil {
			return fail(err)
		}
		st.principal = newSource(s.DefaultProfile, f, &o, false)
	case PrincipalWorkload:
		f, err := newWorkloadFetcher(&o)
		if err != nil {
			return fail(err)
		}
		st.principal = newSource(s.DefaultProfile, f, &o, true)
	case PrincipalTokenExchange:
		f, err := newTokenExchangeFetcher(&o)
		if err != nil {
			return fail(err)
		}
		st.principal = newSource(s.DefaultProfile, f, &o, true)
	default:
		return fail(fmt.Errorf("principal %q: want %s, %s, %s or %s", s.Principal, PrincipalInstance, PrincipalResource, PrincipalWorkload, PrincipalTokenExchange))
	}
	if _, err := os.Stat(s.ConfigPath); err == nil {
		cfg, err := openConfig(s.ConfigPath, o, loop, false)
		if err != nil {
			st.principal.Close()
			return fail(err)
		}
		st.cfg = cfg
	} else if !errors.Is(err, fs.ErrNotExist) {
		st.principal.Close()
		return fail(err)
	}
	return st, nil
}

// Source returns the named profile's credentials.
func (s *Store) Source(profile string) signer.Source {
	if s.principal != nil && profile == s.name {
		return s.principal
	}
	if s.cfg != nil {
		return s.cfg.Source(profile)
	}
	return NotFound(profile, "only the default profile "+s.name+" is configured (by a principal)")
}

// Names lists the profiles the store signs for, sorted.
func (s *Store) Names() []string {
	var names []string
	if s.principal != nil {
		names = append(names, s.name)
	}
	if s.cfg != nil {
		for _, n := range s.cfg.Names() {
			if s.principal == nil || n != s.name {
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
	case s.principal != nil && profile == s.name:
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

// Config is the watched config file, or nil when a principal stands alone.
func (s *Store) Config() *ConfigFile { return s.cfg }

// Close stops the loop: no refresh runs after it returns.
func (s *Store) Close() error {
	if s.principal != nil {
		s.principal.Close()
	}
	if s.cfg != nil {
		s.cfg.Close()
	}
	return s.loop.Close()
}
