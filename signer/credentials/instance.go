package credentials

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials/internal/hook"
)

// newInstanceFetcher gets the credentials of the compute instance this runs
// on: the instance's certificate and key from the metadata service (IMDS
// v2), exchanged at the auth service's /v1/x509 for a token bound to a fresh
// in-memory RSA-2048 session key. The certificate is fetched again at each
// renewal, so a rotated certificate is picked up.
func newInstanceFetcher(o *options) *instancePrincipal { return &instancePrincipal{opts: o} }

type instancePrincipal struct {
	opts *options

	mu     sync.Mutex
	region string // fetched once: an instance does not move
}

func (ip *instancePrincipal) fetch(ctx context.Context, _ bool) (*entry[*signer.Credentials], error) {
	c, err := ip.federate(ctx)
	if err != nil {
		return nil, err
	}
	return principalEntry(c, ip.opts), nil
}

// principalEntry is the cache entry of credentials a service issued:
// renewed ahead of expiry.
func principalEntry(c *signer.Credentials, o *options) *entry[*signer.Credentials] {
	c.Refreshed = o.clock.Now()
	// The new session key's first signature costs most (OpenSSL imports the
	// key and checks it): make it here, in the fetch, not in a request.
	if why := signer.Prepare(c.Key); why != nil {
		o.log.Warn("the new session key signs with crypto/rsa", "principal", string(c.Kind), "why", why.Error())
	}
	o.log.Info("token obtained", "principal", string(c.Kind), "expires", c.Token.Expiry.UTC(), "key_id", signer.MaskKeyID(c.KeyID))
	return &entry[*signer.Credentials]{value: c, expires: c.Token.Expiry, refreshAt: renewAt(c.Token, o.refreshMargin)}
}

// imdsGet reads one metadata path with the v2 header.
func (ip *instancePrincipal) imdsGet(ctx context.Context, path string) ([]byte, error) {
	u := strings.TrimSuffix(ip.opts.metadataURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer Oracle")
	resp, err := ip.opts.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("instance metadata %s: %w", u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("instance metadata %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("instance metadata %s: %s", u, resp.Status)
	}
	return data, nil
}

func (ip *instancePrincipal) federate(ctx context.Context) (*signer.Credentials, error) {
	fail := func(detail string, err error) error {
		return &signer.Error{Kind: signer.ErrAuthService, Profile: "instance_principal", Detail: detail, Err: err,
			Hint: "instance principals work only on an OCI compute instance whose dynamic group has policies"}
	}
	ip.mu.Lock()
	region := ip.region
	ip.mu.Unlock()
	if region == "" {
		raw, err := ip.imdsGet(ctx, "/instance/region")
		if err != nil {
			return nil, fail("cannot read the instance's region", err)
		}
		if region, err = checkRegion(string(raw), "instance_principal", "", "the region instance metadata answered"); err != nil {
			return nil, fail("instance metadata named no region", err)
		}
		ip.mu.Lock()
		ip.region = region
		ip.mu.Unlock()
	}
	certPEM, err := ip.imdsGet(ctx, "/identity/cert.pem")
	if err != nil {
		return nil, fail("cannot read the instance certificate", err)
	}
	keyPEM, err := ip.imdsGet(ctx, "/identity/key.pem")
	if err != nil {
		return nil, fail("cannot read the instance key", err)
	}
	interPEM, err := ip.imdsGet(ctx, "/identity/intermediate.pem")
	if err != nil {
		return nil, fail("cannot read the intermediate certificate", err)
	}
	leaf, err := parseCertificate(certPEM)
	if err != nil {
		return nil, fail("instance certificate unreadable", err)
	}
	leafKey, err := signer.ParsePrivateKey(keyPEM, nil)
	if err != nil {
		return nil, fail("instance key unreadable", err)
	}
	tenancy := tenancyOf(leaf)
	if tenancy == "" {
		return nil, fail("instance certificate names no tenancy (no opc-tenant: in its subject)", nil)
	}
	sessionKey, pubPEM, err := newSessionKey()
	if err != nil {
		return nil, err
	}
	body := map[string]any{
		"certificate":              pemBody(certPEM),
		"publicKey":                pemBody(pubPEM),
		"intermediateCertificates": []string{pemBody(interPEM)},
		"fingerprintAlgorithm":     "SHA256",
	}
	leafCreds := &signer.Credentials{KeyID: tenancy + "/fed-x509-sha256/" + colonHex(sha256.Sum256(leaf.Raw)), Key: leafKey}
	var out struct {
		Token string `json:"token"`
	}
	base, err := ip.opts.authURL(region)
	if err != nil {
		return nil, fail("no auth service for the instance's region", err)
	}
	// The SDKs sign this endpoint without host.
	if err := postSigned(ctx, ip.opts, base+"/v1/x509", body, leafCreds, false, &out); err != nil {
		return nil, fail("federation at the auth service failed", err)
	}
	tok, err := bindToken(out.Token, sessionKey, "the auth service")
	if err != nil {
		return nil, fail("federation failed", err)
	}
	return &signer.Credentials{KeyID: "ST$" + tok.Raw, Key: sessionKey, Kind: signer.KindInstance, Profile: "instance_principal",
		Region: region, Tenancy: tenancy, Token: tok}, nil
}

func parseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// tenancyOf reads the tenancy OCID OCI puts in an instance certificate's
// subject as "opc-tenant:<ocid>".
func tenancyOf(cert *x509.Certificate) string {
	for _, n := range cert.Subject.Names {
		if v, ok := n.Value.(string); ok {
			if t, ok := strings.CutPrefix(v, "opc-tenant:"); ok {
				return t
			}
		}
	}
	return ""
}

// pemBody is a PEM file's base64 body on one line, as the federation
// endpoint takes certificates and keys.
func pemBody(p []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(p), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "-----") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

func colonHex(sum [sha256.Size]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(sum)*3)
	for i, c := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

// newSessionKey makes the in-memory RSA-2048 key a federated token is bound
// to, with its public half as PEM for the request that asks for the token.
func newSessionKey() (*rsa.PrivateKey, []byte, error) {
	generate := generateSessionKey
	if hook.SessionKey != nil {
		generate = hook.SessionKey // tests: fixed keys
	}
	key, err := generate()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// generateSessionKey is a fresh in-memory RSA-2048 key.
func generateSessionKey() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }

// bindToken reads a token a service issued for key, and refuses one issued
// for another key: signing with it would only earn 401s.
func bindToken(raw string, key *rsa.PrivateKey, issuer string) (*signer.Token, error) {
	tok, err := signer.ParseToken(raw)
	if err != nil {
		return nil, fmt.Errorf("%s returned an unreadable token: %w", issuer, err)
	}
	if !tok.MatchesKey(&key.PublicKey) {
		return nil, fmt.Errorf("%s returned a token for another key", issuer)
	}
	key.Precompute()
	return tok, nil
}
