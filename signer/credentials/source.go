package credentials

import (
	"context"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

type signerCredentials = signer.Credentials

// Source is a credential source behind the cache: the credentials of one
// profile or principal, fetched ahead of use and refreshed ahead of expiry.
// It implements signer.Source; Close ends its background refreshes.
type Source struct {
	c        *cache[*signer.Credentials]
	loop     *Loop
	ownsLoop bool
}

// Credentials implements signer.Source. It does not block while the
// current credentials are valid and their files unchanged.
func (s *Source) Credentials(ctx context.Context) (*signer.Credentials, error) {
	return s.c.get(ctx)
}

// Close stops refreshing the source (and stops its loop if it started one).
func (s *Source) Close() error {
	s.loop.remove(s.c)
	if s.ownsLoop {
		return s.loop.Close()
	}
	return nil
}

// newSource wraps f in a cache in the loop of o (or a loop of its own).
func newSource(name string, f fetcher[*signer.Credentials], o *options, remote bool) *Source {
	loop, owns := o.ownLoop()
	return &Source{c: newCache(name, f, o, loop, remote), loop: loop, ownsLoop: owns}
}

// errorSource is a source that cannot work, for a principal whose
// environment is incomplete.
type errorSource struct{ err error }

func (s errorSource) Credentials(context.Context) (*signer.Credentials, error) { return nil, s.err }

// NotFound is a Source for a profile that does not exist; why says where
// profiles come from instead.
func NotFound(profile, why string) signer.Source {
	return errorSource{&signer.Error{Kind: signer.ErrProfileNotFound, Profile: profile, Detail: "no profile " + profile + ": " + why}}
}

// A Fetcher gets credentials from where they live: the part of a source
// that NewSource puts the cache in front of, as oauth2's ReuseTokenSource
// does for a TokenSource.
type Fetcher interface {
	// Fetch returns the credentials to use now. background is true when
	// the loop calls ahead of expiry or to retry; when it is false a caller
	// is waiting, and a fetcher that can answer from what it has should not
	// go to the network.
	Fetch(ctx context.Context, background bool) (*Fetched, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, background bool) (*Fetched, error)

// Fetch implements Fetcher.
func (f FetcherFunc) Fetch(ctx context.Context, background bool) (*Fetched, error) {
	return f(ctx, background)
}

// Fetched is one fetch's result.
type Fetched struct {
	Credentials *signer.Credentials
	// RefreshAt is when to fetch again in the background, ahead of the
	// credentials' expiry; zero: never.
	RefreshAt time.Time
	// Changed, if set, reports cheaply that the source changed since the
	// last fetch, so the cache fetches before answering.
	Changed func() bool
}

// NewSource puts f behind the cache, in the loop given WithLoop or in one
// of its own. A failed background fetch is retried with backoff.
func NewSource(name string, f Fetcher, opts ...Option) *Source {
	o := newOptions(opts)
	return newSource(name, fetcherAdapter{f}, &o, true)
}

type fetcherAdapter struct{ f Fetcher }

func (a fetcherAdapter) fetch(ctx context.Context, background bool) (*entry[*signer.Credentials], error) {
	r, err := a.f.Fetch(ctx, background)
	if err != nil {
		return nil, err
	}
	return &entry[*signer.Credentials]{value: r.Credentials, expires: r.Credentials.Expiry(), refreshAt: r.RefreshAt, changed: r.Changed}, nil
}
