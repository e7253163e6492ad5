package credentials

import (
	"crypto/rsa"
	"encoding/json"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// Environment variables that hold secrets of the default profile as values,
// for CI and Kubernetes Secrets projected as environment: the session token
// (the raw JWT or its {"token": "..."} JSON) and the key's passphrase. They
// are read from the environment only: a flag would show in ps.
const (
	EnvSecurityToken = "OCISIGNER_SECURITY_TOKEN"
	EnvPassphrase    = "OCISIGNER_PASS_PHRASE"
)

// profileFiles are the files of a profile besides its key: each optional,
// each watched with the key, each read on every fetch.
type profileFiles struct {
	passphrase string // pass_phrase_file
	delegation string // delegation_token_file
}

func resolveProfileFiles(p *profile, o *options) (profileFiles, error) {
	var pf profileFiles
	var err error
	if p.Get("pass_phrase_file") != "" {
		if pf.passphrase, err = resolveLogged(p, "pass_phrase_file", "pass phrase file", o); err != nil {
			return pf, err
		}
	}
	if p.Get("delegation_token_file") != "" {
		if pf.delegation, err = resolveLogged(p, "delegation_token_file", "delegation token file", o); err != nil {
			return pf, err
		}
	}
	return pf, nil
}

// paths appends the files that are set to paths.
func (pf profileFiles) paths(paths []string) []string {
	for _, p := range []string{pf.passphrase, pf.delegation} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

// passphraseOf is the profile's key passphrase: the value given for it, the
// pass_phrase_file, or pass_phrase in the config.
func passphraseOf(p *profile, o *options, pf profileFiles) (string, error) {
	if p.Name == o.secretsFor && o.passphrase != "" {
		return o.passphrase, nil
	}
	if pf.passphrase != "" {
		data, err := readFile(pf.passphrase, "pass phrase file")
		return strings.TrimRight(string(data), "\r\n"), err
	}
	return p.Passphrase(), nil
}

// profileKey reads a profile's private key with its passphrase, wherever
// that comes from.
func profileKey(p *profile, o *options, keyPath string, pf profileFiles) (*rsa.PrivateKey, error) {
	passphrase, err := passphraseOf(p, o, pf)
	if err != nil {
		return nil, err
	}
	return readKey(keyPath, passphrase)
}

// delegationOf is the profile's delegation token (opc-obo-token), if it
// names one.
func delegationOf(pf profileFiles) (string, error) {
	if pf.delegation == "" {
		return "", nil
	}
	data, err := readFile(pf.delegation, "delegation token file")
	if err != nil {
		return "", err
	}
	tok, err := tokenValue(data)
	if err != nil {
		return "", &signer.Error{Kind: signer.ErrTokenMalformed, Path: pf.delegation, Detail: "delegation token file holds no token", Err: err}
	}
	return tok, nil
}

// tokenValue reads a token as a token file (or a value) may hold it: the
// raw JWT, or the JSON {"token": "..."} the auth service answers with.
func tokenValue(data []byte) (string, error) {
	s := strings.TrimSpace(string(data))
	if !strings.HasPrefix(s, "{") {
		return s, nil
	}
	var v struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil || v.Token == "" {
		return "", &signer.Error{Kind: signer.ErrTokenMalformed, Detail: `security token is JSON without a "token" string`, Err: err}
	}
	return strings.TrimPrefix(v.Token, "ST$"), nil
}
