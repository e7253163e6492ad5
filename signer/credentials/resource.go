package credentials

import (
	"context"
	"fmt"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// resourceFetcher reads the resource principal (v2.2) the environment
// describes: OCI_RESOURCE_PRINCIPAL_RPST, _PRIVATE_PEM and
// _PRIVATE_PEM_PASSPHRASE each hold a value or an absolute path to a file
// holding it; files are read again when they change.
type resourceFetcher struct {
	o                       *options
	rpst, pem, pass, region string
	files                   []string
	w                       watch
}

func newResourceFetcher(o *options) (*resourceFetcher, error) {
	fail := func(detail, hint string) error {
		return &signer.Error{Kind: signer.ErrConfig, Profile: "resource_principal", Detail: detail, Hint: hint}
	}
	if v := o.getenv(envRPVersion); v != "2.2" {
		return nil, fail(fmt.Sprintf("%s is %q; ocisigner reads resource principal version 2.2", envRPVersion, v), "")
	}
	f := &resourceFetcher{o: o, rpst: o.getenv(envRPST), pem: o.getenv(envRPPrivatePEM), pass: o.getenv(envRPPassphrase), region: o.getenv(envRPRegion)}
	if f.rpst == "" || f.pem == "" {
		return nil, fail(envRPST+" and "+envRPPrivatePEM+" must be set", "each holds a value or an absolute path")
	}
	if f.region == "" {
		return nil, fail(envRPRegion+" is not set", "")
	}
	id, err := checkRegion(f.region, "resource_principal", "", envRPRegion)
	if err != nil {
		return nil, err
	}
	f.region = id
	for _, v := range []string{f.pem, f.rpst, f.pass} {
		if isPath(v) {
			f.files = append(f.files, v)
		}
	}
	return f, nil
}

// isPath: a value that is an absolute path names a file; anything else is
// the value itself.
func isPath(v string) bool { return strings.HasPrefix(v, "/") }

func value(v, what string) (string, error) {
	if !isPath(v) {
		return v, nil
	}
	data, err := readFile(v, what)
	return strings.TrimSpace(string(data)), err
}

func (f *resourceFetcher) fetch(context.Context, bool) (*entry[*signer.Credentials], error) {
	var c *signer.Credentials
	err := f.w.read(f.files, func() error {
		keyPEM, err := value(f.pem, "resource principal private key")
		if err != nil {
			return err
		}
		passphrase, err := value(f.pass, "resource principal passphrase")
		if err != nil {
			return err
		}
		key, err := signer.ParsePrivateKey([]byte(keyPEM), []byte(passphrase))
		if err != nil {
			return err
		}
		raw, err := value(f.rpst, "resource principal session token")
		if err != nil {
			return err
		}
		c, err = signer.NewSessionCredentials(raw, key)
		return err
	})
	if err != nil {
		return nil, withProfile(err, "resource_principal")
	}
	c.Kind, c.Profile, c.Region, c.Tenancy = signer.KindResource, "resource_principal", f.region, resourceTenancy(c.Token)
	if c.Token.Expired(f.o.clock.Now()) {
		return nil, tokenExpired("resource_principal", signer.KindResource, f.files, c.Token, nil, f.o.clock.Now())
	}
	e := &entry[*signer.Credentials]{value: c, expires: c.Token.Expiry}
	if len(f.files) > 0 {
		e.changed = f.w.changed
	}
	return e, nil
}
