package intercept

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/internal/text"
	"github.com/ocisigner/ocisigner/signer"
)

// Leaf lifetimes. A leaf is valid from leafBackdate before it was minted,
// for clients whose clock lags the gateway's, to its TTL after; the whole
// span is at most MaxLeafValidity.
const (
	MaxLeafValidity = time.Hour
	leafBackdate    = 5 * time.Minute
	// MaxLeafTTL is the longest TTL Issue accepts.
	MaxLeafTTL = MaxLeafValidity - leafBackdate
)

// ErrNameNotPermitted is wrapped by Issue for a name it will not mint a
// leaf for.
var ErrNameNotPermitted = errors.New("no certificate for that name")

// Issue mints a leaf for name, a DNS host name the CA serves: a fresh P-256
// key, and a certificate whose only SAN is name, for serverAuth only,
// valid until now+ttl, rounded down to the second (ttl at most
// MaxLeafTTL, and not past the CA's own expiry). It returns the certificate chain (the leaf, then the CA when the
// CA is not self-signed) and the key (PKCS#8), both in PEM, as Envoy's
// tls_certificate takes them. A name the CA's constraints refuse, as Go's
// verifier matches them, gets no leaf: not even the key is made.
func (c *CA) Issue(name string, now time.Time, ttl time.Duration) (chainPEM, keyPEM []byte, notAfter time.Time, err error) {
	if err := c.checkName(name); err != nil {
		return nil, nil, time.Time{}, err
	}
	if ttl <= 0 || ttl > MaxLeafTTL {
		return nil, nil, time.Time{}, fmt.Errorf("intercept: a leaf TTL of %s is outside (0, %s]", ttl, MaxLeafTTL)
	}
	// A certificate holds whole seconds: the notAfter returned is the one
	// it carries, never a moment later.
	notAfter = now.Add(ttl).Truncate(time.Second)
	if notAfter.After(c.cert.NotAfter) {
		return nil, nil, time.Time{}, fmt.Errorf("%w: the CA expires at %s, before a leaf minted now would; mint a new CA",
			ErrCA, c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("intercept: generating a leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("intercept: signing a leaf for %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("intercept: encoding a leaf key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	chainPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if !c.selfSigned {
		chainPEM = append(chainPEM, c.certPEM...)
	}
	return chainPEM, keyPEM, notAfter, nil
}

// checkName refuses what Issue must not mint for, before any key is made.
func (c *CA) checkName(name string) error {
	if !signer.ValidHostName(name) || !strings.Contains(name, ".") {
		return fmt.Errorf("%w %q: not a lower-case DNS host name", ErrNameNotPermitted, capName(name))
	}
	if last := name[strings.LastIndexByte(name, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("%w %q: an IP address, which the CA excludes", ErrNameNotPermitted, name)
	}
	if c.serves != nil && !c.serves.serves(name) {
		return fmt.Errorf("%w %q: outside the OCI realm domains and the allowed hosts", ErrNameNotPermitted, name)
	}
	if !dnsPermits(name, c.cert.PermittedDNSDomains, c.cert.ExcludedDNSDomains) {
		return fmt.Errorf("%w %q: outside the CA's name constraints", ErrNameNotPermitted, name)
	}
	return nil
}

// capName shortens a hostile name before it is quoted in an error, a log
// or an event, at a character boundary.
func capName(s string) string { return text.Cut(s, maxEchoedName) }

// maxEchoedName is how much of a name a client chose is echoed.
const maxEchoedName = 256
