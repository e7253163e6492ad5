package credentials

import (
	"fmt"

	"github.com/ocisigner/ocisigner/signer"
)

// Principals a Store can sign its default profile as, instead of reading it
// from the config file (Settings.Principal).
const (
	PrincipalInstance = "instance"
	PrincipalResource = "resource"
	PrincipalWorkload = "workload"
	// PrincipalTokenExchange exchanges a trusted identity provider's JWT at
	// an OCI IAM identity domain for a user principal session token; its
	// settings are Settings.TokenExchange.
	PrincipalTokenExchange = "token-exchange"
)

// principalKinds are the kinds Settings.Principal names.
var principalKinds = map[string]signer.Kind{
	PrincipalInstance:      signer.KindInstance,
	PrincipalResource:      signer.KindResource,
	PrincipalWorkload:      signer.KindWorkload,
	PrincipalTokenExchange: signer.KindTokenExchange,
}

// profileKind is the principal a config profile describes.
func profileKind(p *profile, o *options) signer.Kind {
	kind := p.Kind()
	if p.Name == o.secretsFor && o.tokenValue != "" && (kind == signer.KindAPIKey || kind == signer.KindSession) {
		return signer.KindSession // the token given as a value makes it a session profile
	}
	return kind
}

// newFetcher is the one place that names which principal gets credentials
// how: a config profile (p, of profileKind) or the principal a Store's
// default profile is answered by (p nil). remote says the credentials come
// from a service, so a failed fetch is retried even before one ever worked.
func newFetcher(kind signer.Kind, p *profile, o *options) (f fetcher[*signer.Credentials], remote bool, err error) {
	switch kind {
	case signer.KindAPIKey:
		return &apiKeyFetcher{p: p, o: o}, false, nil
	case signer.KindSession:
		return &sessionFetcher{p: p, o: o}, false, nil
	case signer.KindInstance:
		return newInstanceFetcher(o), true, nil
	case signer.KindResource:
		f, err = newResourceFetcher(o)
		return f, false, err
	case signer.KindWorkload:
		f, err = newWorkloadFetcher(o)
		return f, true, err
	case signer.KindTokenExchange:
		if p != nil {
			f, err = newProfileTokenExchange(p, o)
		} else {
			f, err = newTokenExchangeFetcher(o)
		}
		return f, true, err
	}
	return nil, false, fmt.Errorf("no principal of kind %q", kind)
}

// newSource puts a fetcher behind the cache, in the loop.
func newSource(name string, f fetcher[*signer.Credentials], o *options, l *refreshLoop, remote bool) source {
	c := &cache[*signer.Credentials]{name: name, f: f, clock: o.clock, log: o.log, observe: o.observe, remote: remote, onNew: l.poke}
	l.add(c)
	return source{c}
}
