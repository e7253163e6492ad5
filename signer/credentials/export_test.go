package credentials

import (
	"context"
	"log/slog"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// What the package's own tests (package credentials_test) reach besides
// the exported API: sources on a loop they own, each principal alone, the
// config file without a Store, and a fetcher of their own behind the cache.

// Profile is a config profile as the file says it.
type Profile = profile

// ExchangeError is the identity domain's refusal of a token exchange.
type ExchangeError = exchangeError

// SystemClock is the real time.
var SystemClock Clock = systemClock{}

// Loop is the refresh loop, which a test owns and closes.
type Loop = refreshLoop

// NewLoop starts a refresh loop.
func NewLoop(clock Clock, log *slog.Logger) *Loop { return newLoop(clock, log) }

// Source is a source with its end: Close stops its refreshes (and the loop,
// when it is the source's own).
type Source struct {
	signer.Source
	close func() error
}

// Close ends the source.
func (s *Source) Close() error { return s.close() }

// A Fetcher gets credentials from where they live, as the package's
// fetchers do: background is true when the loop calls ahead of expiry or to
// retry.
type Fetcher interface {
	Fetch(ctx context.Context, background bool) (*Fetched, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, background bool) (*Fetched, error)

// Fetch implements Fetcher.
func (f FetcherFunc) Fetch(ctx context.Context, background bool) (*Fetched, error) {
	return f(ctx, background)
}

// Fetched is one fetch's result: when to fetch again (zero: never), and
// optionally a cheap check that the source changed.
type Fetched struct {
	Credentials *signer.Credentials
	RefreshAt   time.Time
	Changed     func() bool
}

type fetcherAdapter struct{ f Fetcher }

func (a fetcherAdapter) fetch(ctx context.Context, background bool) (*entry[*signer.Credentials], error) {
	r, err := a.f.Fetch(ctx, background)
	if err != nil {
		return nil, err
	}
	return &entry[*signer.Credentials]{value: r.Credentials, expires: r.Credentials.Expiry(), refreshAt: r.RefreshAt, changed: r.Changed}, nil
}

// NewSource puts f behind the cache, in loop; a failed background fetch is
// retried with backoff.
func NewSource(name string, f Fetcher, loop *Loop, opts ...Option) *Source {
	o := newOptions(opts)
	src := newSource(name, fetcherAdapter{f}, &o, loop, true)
	return &Source{src, func() error { loop.remove(src.c); return nil }}
}

// WithTokenExchange gives the token-exchange principal its settings, as
// Settings.TokenExchange does.
func WithTokenExchange(tx TokenExchange) Option { return func(o *options) { o.tokenExchange = &tx } }

// WithWorkloadIdentity is credentialstest.WorkloadIdentity.
var WithWorkloadIdentity = withWorkloadIdentity

// WithProfileSecrets gives profile a session token and a key passphrase as
// values, as Settings.SessionToken and Settings.Passphrase do for the
// default profile.
func WithProfileSecrets(profile, token, passphrase string) Option {
	return func(o *options) { o.secretsFor, o.tokenValue, o.passphrase = profile, token, passphrase }
}

// principal opens a Store of one principal alone, the way serve does, with
// the principal's kind as the profile name.
func principal(name string, kind signer.Kind, opts []Option) (*Source, error) {
	o := newOptions(opts)
	st, err := Open(Settings{Principal: name, DefaultProfile: string(kind), TokenExchange: o.tokenExchange}, opts...)
	if err != nil {
		return nil, err
	}
	return &Source{st.Source(string(kind)), st.Close}, nil
}

// InstancePrincipal is the instance principal alone.
func InstancePrincipal(opts ...Option) *Source {
	s, err := principal(PrincipalInstance, signer.KindInstance, opts)
	if err != nil {
		panic(err) // the instance principal needs no settings
	}
	return s
}

// ResourcePrincipal is the resource principal alone.
func ResourcePrincipal(opts ...Option) (*Source, error) {
	return principal(PrincipalResource, signer.KindResource, opts)
}

// WorkloadIdentity is the OKE workload identity alone.
func WorkloadIdentity(opts ...Option) (*Source, error) {
	return principal(PrincipalWorkload, signer.KindWorkload, opts)
}

// TokenExchangePrincipal is the token-exchange principal alone, with the
// settings WithTokenExchange gives.
func TokenExchangePrincipal(opts ...Option) (*Source, error) {
	return principal(PrincipalTokenExchange, signer.KindTokenExchange, opts)
}

// ConfigFile is a watched config file alone, on a loop of its own.
type ConfigFile struct {
	c    *configFile
	loop *refreshLoop
}

// OpenConfig opens the config file at path.
func OpenConfig(path string, opts ...Option) (*ConfigFile, error) {
	o := newOptions(opts)
	l := newLoop(o.clock, o.log)
	c, err := openConfig(path, o, l)
	if err != nil {
		l.Close()
		return nil, err
	}
	return &ConfigFile{c, l}, nil
}

// Source returns the named profile's credentials as the file says.
func (c *ConfigFile) Source(name string) signer.Source { return c.c.source(name) }

// Names lists the file's profiles, sorted.
func (c *ConfigFile) Names() []string { return c.c.names() }

// Profile returns the named profile as the file says now.
func (c *ConfigFile) Profile(name string) (*Profile, error) { return c.c.profile(name) }

// Close stops the file's loop.
func (c *ConfigFile) Close() error { return c.loop.Close() }
