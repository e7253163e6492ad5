package credentials

import (
	"context"

	"github.com/ocisigner/ocisigner/signer"
)

// source is a cache of credentials as a signer.Source: the one wrapper
// every profile and principal is served through.
type source struct{ c *cache[*signer.Credentials] }

// Credentials implements signer.Source. It does not block while the
// current credentials are valid and their files unchanged.
func (s source) Credentials(ctx context.Context) (*signer.Credentials, error) {
	return s.c.get(ctx)
}

// errorSource is a source that cannot work: a profile that does not exist,
// a principal whose environment is incomplete.
type errorSource struct{ err error }

func (s errorSource) Credentials(context.Context) (*signer.Credentials, error) { return nil, s.err }

// notFound is the source of a profile that does not exist; why says where
// profiles come from instead.
func notFound(profile, why string) signer.Source {
	return errorSource{&signer.Error{Kind: signer.ErrProfileNotFound, Profile: profile, Detail: "no profile " + profile + ": " + why}}
}
