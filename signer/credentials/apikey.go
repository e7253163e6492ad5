package credentials

import (
	"context"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// apiKeyFetcher reads an API-key profile and checks the key against the
// profile's fingerprint, so a wrong key is an error now instead of a 401
// later. The cache reads it again whenever the key file changes.
type apiKeyFetcher struct {
	p *profile
	o *options
	w watch
}

func (f *apiKeyFetcher) fetch(context.Context, bool) (*entry[*signer.Credentials], error) {
	p := f.p
	for _, k := range []string{"tenancy", "user", "fingerprint"} {
		if p.Get(k) == "" {
			return nil, &signer.Error{Kind: signer.ErrConfig, Profile: p.Name, Path: p.ConfigPath,
				Detail: fmt.Sprintf("API-key profile has no %s", k),
				Hint:   "add " + k + "=... to the profile, or security_token_file=... for a session profile"}
		}
	}
	region, err := p.Region()
	if err != nil {
		return nil, err
	}
	keyPath, err := resolveLogged(p, "key_file", "key file", f.o)
	if err != nil {
		return nil, err
	}
	pf, err := resolveProfileFiles(p, f.o)
	if err != nil {
		return nil, err
	}
	var c *signer.Credentials
	err = f.w.read(pf.paths([]string{keyPath}), func() error {
		key, err := profileKey(p, f.o, keyPath, pf)
		if err != nil {
			return err
		}
		obo, err := delegationOf(pf)
		if err != nil {
			return err
		}
		fp := signer.Fingerprint(&key.PublicKey)
		// The console shows fingerprints in lower case; one copied in upper
		// case names the same key.
		if want := p.Get("fingerprint"); fp != strings.ToLower(want) {
			return &signer.Error{Kind: signer.ErrFingerprintMismatch, Path: keyPath,
				Detail: fmt.Sprintf("key %s has fingerprint %s but the profile says %s", keyPath, fp, want),
				Hint: "key_file must name the private key of the API key whose fingerprint the profile names " +
					"(the console lists each API key's fingerprint under the user); a fingerprint is not something to change to fit a key"}
		}
		c = &signer.Credentials{
			KeyID:    p.Get("tenancy") + "/" + p.Get("user") + "/" + fp,
			Key:      key,
			Kind:     signer.KindAPIKey,
			Profile:  p.Name,
			Region:   region,
			Tenancy:  p.Get("tenancy"),
			OBOToken: obo,
		}
		return nil
	})
	if err != nil {
		return nil, withProfile(err, p.Name)
	}
	return &entry[*signer.Credentials]{value: c, changed: f.w.changed}, nil
}

func readKey(path, passphrase string) (*rsa.PrivateKey, error) {
	data, err := readFile(path, "key file")
	if err != nil {
		return nil, err
	}
	key, err := signer.ParsePrivateKey(data, []byte(passphrase))
	if err != nil {
		if e, ok := err.(*signer.Error); ok {
			e.Path = path
		}
		return nil, err
	}
	return key, nil
}

func resolveLogged(p *profile, key, what string, o *options) (string, error) {
	written := p.Get(key)
	path, moved, err := resolvePath(p, key, what)
	if err != nil {
		return "", withProfile(err, p.Name)
	}
	if moved {
		o.log.Info("file named in the config not found where written; using the one under the config folder",
			"profile", p.Name, "key", key, "written", written, "using", path)
	}
	return path, nil
}
