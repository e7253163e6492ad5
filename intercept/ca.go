package intercept

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/internal/atomicfile"
)

// Files of a CA in a state directory.
const (
	CertFileName = "ca.pem"     // 0644: hand it to clients
	KeyFileName  = "ca-key.pem" // 0600: never leaves the directory
)

// caValidity is how long a CA minted here is valid. Clients hold its
// certificate in their trust stores, so it outlives many restarts; its
// name constraints are what make a long life tolerable.
const caValidity = 10 * 365 * 24 * time.Hour

// Errors of LoadOrCreate and Load, for errors.Is.
var (
	// ErrCA: the CA's files are missing, unreadable, unsafe or not a CA
	// this package can use; the message says which and what to do.
	ErrCA = errors.New("unusable interception CA")
	// ErrConstraints: the CA's name constraints do not cover a domain or
	// host interception must now serve.
	ErrConstraints = errors.New("interception CA's name constraints do not cover the allowed hosts")
)

// CA is a name-constrained certificate authority that issues short-lived
// leaves. Its key is never printed: String, GoString and LogValue show the
// certificate only.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	// selfSigned: a root, left out of the chains of its leaves.
	selfSigned bool
	// serves is what Issue mints for, when narrower than the certificate's
	// constraints (LoadOrCreate); nil: whatever they permit (Load).
	serves *names
}

// LoadOrCreate returns the CA kept in dir, minting one on first start: a
// P-256 key (KeyFileName, mode 0600) and a self-signed certificate
// (CertFileName, 0644) whose critical name constraints permit the OCI realm
// domains and patterns (in --allow-host form: "host", "host:port",
// "*.domain") and exclude every IP address. dir is created with mode 0700
// when missing; an existing one keeps its mode (it may be a mount point),
// but a key file that others may read is refused.
//
// A CA already in dir is kept if its constraints cover every name asked
// for now, even when they permit more (a --allow-host removed since): Issue
// mints only for what was asked now, and re-minting would break every
// client that trusts the old certificate. One that covers less (a host
// added since, or a realm this version of ocisigner knows and the CA does
// not) is refused with ErrConstraints: a name constraint cannot be
// widened, so the operator chooses between a new CA (delete both files;
// every client must then trust the new certificate) and the earlier
// --allow-host.
func LoadOrCreate(dir string, patterns []string, now time.Time) (*CA, error) {
	want, err := parseNames(patterns)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	_, certErr := os.Lstat(certPath)
	_, keyErr := os.Lstat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		ca, err := create(dir, want, now)
		if !errors.Is(err, fs.ErrExist) {
			return ca, err
		}
		// Another process created it first: use theirs.
	case errors.Is(certErr, fs.ErrNotExist) || errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s holds only one of %s and %s; remove it to mint a new CA (clients must then trust the new %s)",
			ErrCA, dir, CertFileName, KeyFileName, CertFileName)
	}
	ca, err := Load(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	if err := ca.Covers(patterns); err != nil {
		return nil, fmt.Errorf("%w; either mint a new CA by removing %s and %s (every client must then trust the new %s), or restore the earlier --allow-host",
			err, certPath, keyPath, CertFileName)
	}
	ca.serves = &want
	return ca, ca.checkValid(now)
}

// Load reads an operator's CA: a PEM certificate and an unencrypted PEM
// key (PKCS#8, SEC 1 or PKCS#1; ECDSA P-256/P-384 or RSA of 2048 bits or
// more). It refuses a CA without critical name constraints that permit DNS
// names only and exclude every IPv4 and IPv6 address: an unconstrained CA
// in a gateway's hands could mint a certificate for any site its clients
// visit. An openssl configuration for one:
//
//	basicConstraints = critical, CA:true, pathlen:0
//	keyUsage = critical, keyCertSign, cRLSign
//	nameConstraints = critical, permitted;DNS:oraclecloud.com, excluded;IP:0.0.0.0/0.0.0.0, excluded;IP:::/0
//
// Issue then mints for whatever the constraints permit; Covers tells
// whether they cover what the operator allows.
func Load(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the certificate: %w", ErrCA, err)
	}
	cert, err := parseCACert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCA, certFile, err)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCA, keyFile, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key in %s is not the key of the certificate in %s", ErrCA, keyFile, certFile)
	}
	return &CA{
		cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), key: key,
		selfSigned: cert.CheckSignatureFrom(cert) == nil,
	}, nil
}

// parseCACert reads one PEM certificate and checks that it is a CA whose
// constraints make it safe to hold.
func parseCACert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE in it")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, errors.New("the certificate is not a CA (basicConstraints CA:true)")
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, errors.New("the CA's keyUsage lacks keyCertSign")
	case !cert.PermittedDNSDomainsCritical || len(cert.PermittedDNSDomains) == 0:
		return nil, errors.New("the CA has no critical name constraints permitting DNS domains; an unconstrained CA could mint for any site (see intercept.Load for an openssl recipe)")
	case !excludesAllIPs(cert.ExcludedIPRanges) || len(cert.PermittedIPRanges) > 0:
		return nil, errors.New("the CA's name constraints must exclude every IP address (excluded;IP:0.0.0.0/0.0.0.0 and excluded;IP:::/0)")
	case len(cert.PermittedURIDomains) > 0 || len(cert.PermittedEmailAddresses) > 0:
		return nil, errors.New("the CA's name constraints must permit DNS names only")
	}
	return cert, nil
}

// readKey reads an unencrypted PEM private key, refusing a file that
// others may read (keyModeAllowed). Its errors never carry the file's
// bytes.
func readKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	owner, known := fileOwner(fi)
	if err := keyModeAllowed(fi.Mode().Perm(), owner, known, os.Geteuid()); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	clear(data)
	if block == nil {
		return nil, errors.New("no PEM block in it")
	}
	defer clear(block.Bytes)
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, errors.New("the key is encrypted; give an unencrypted key in a file of mode 0600")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM %q block is not a private key", block.Type)
	}
	if err != nil {
		return nil, errors.New("the private key does not parse")
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("an ECDSA CA key must be on P-256 or P-384")
		}
		return k, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("an RSA CA key of %d bits is too short; 2048 at least", k.N.BitLen())
		}
		return k, nil
	}
	return nil, fmt.Errorf("a %T CA key is not supported; use ECDSA P-256", key)
}

// keyModeAllowed is PostgreSQL's rule for its TLS key file: no access
// but the owner's when the key is the process's own; when root owns it
// and the process is not root, group read as well. The second is how a
// non-root container reads a Kubernetes Secret: kubelet gives the files
// to root and the pod's fsGroup, and turns defaultMode 0400 into 0440.
// A group may read the key only by root's choice, never by the owner's
// careless chmod.
func keyModeAllowed(perm fs.FileMode, owner int, ownerKnown bool, euid int) error {
	switch {
	case perm&0o077 == 0:
		return nil
	case ownerKnown && owner == 0 && euid != 0 && perm&0o037 == 0:
		return nil
	case ownerKnown && owner == 0 && euid != 0:
		return fmt.Errorf("the key file has mode %04o; beyond its owner (root), only its group may read it: chmod 440 it (a Kubernetes Secret: defaultMode 0400 with the pod's fsGroup)", perm)
	}
	return fmt.Errorf("the key file has mode %04o; others may read it: chmod 600 it", perm)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// create mints a CA into dir. Both files are written under temporary
// names and linked into place, so that a crash leaves no half CA and two
// processes starting at once agree on one (the loser gets fs.ErrExist).
func create(dir string, want names, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: creating the state directory: %w", ErrCA, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generating a key: %w", ErrCA, err)
	}
	permitted, excluded := want.constraints()
	tmpl := &x509.Certificate{
		SerialNumber:                randomSerial(),
		Subject:                     pkix.Name{Organization: []string{"ocisigner"}, CommonName: "ocisigner interception CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caValidity),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitted,
		ExcludedDNSDomains:          excluded,
		ExcludedIPRanges:            allIPs(),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing the CA certificate: %w", ErrCA, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCA, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the key: %w", ErrCA, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	defer clear(keyPEM)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := placeFile(dir, KeyFileName, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := placeFile(dir, CertFileName, certPEM, 0o644); err != nil {
		// The key without its certificate would block every later start.
		_ = os.Remove(filepath.Join(dir, KeyFileName))
		return nil, err
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, selfSigned: true, serves: &want}, nil
}

// placeFile writes data to dir/name with mode perm, failing with
// fs.ErrExist (wrapped) if the file is already there.
func placeFile(dir, name string, data []byte, perm os.FileMode) error {
	if err := atomicfile.Place(filepath.Join(dir, name), data, perm); err != nil {
		return fmt.Errorf("%w: placing %s: %w", ErrCA, name, err)
	}
	return nil
}

// randomSerial is a positive 127-bit serial number.
func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

// checkValid refuses a CA that is not valid at now.
func (c *CA) checkValid(now time.Time) error {
	if now.Before(c.cert.NotBefore) || !now.Before(c.cert.NotAfter) {
		return fmt.Errorf("%w: the CA certificate is valid from %s to %s, not now (%s); mint a new CA",
			ErrCA, c.cert.NotBefore.UTC().Format(time.RFC3339), c.cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Covers reports (as an ErrConstraints error naming what is missing)
// whether the CA's name constraints let it serve the OCI realm domains and
// patterns (in --allow-host form).
func (c *CA) Covers(patterns []string) error {
	want, err := parseNames(patterns)
	if err != nil {
		return err
	}
	permits := func(name string) bool {
		return dnsPermits(name, c.cert.PermittedDNSDomains, c.cert.ExcludedDNSDomains)
	}
	var missing []string
	for _, d := range want.domains {
		// A domain is covered when the domain and a name below it verify.
		if !permits(d) || !permits("x."+d) {
			missing = append(missing, "*."+d)
		}
	}
	for _, h := range want.hosts {
		if !permits(h) {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the CA permits %s but not %s", ErrConstraints,
			strings.Join(c.cert.PermittedDNSDomains, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the CA certificate in PEM, for clients to trust.
func (c *CA) CertPEM() []byte { return bytes.Clone(c.certPEM) }

// Bundle returns systemRoots (a PEM bundle, such as Debian's
// /etc/ssl/certs/ca-certificates.crt) followed by this CA's certificate,
// for clients whose trust store is replaced by a file rather than extended
// (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, curl --cacert). Only CERTIFICATE
// blocks of systemRoots are copied, so that a wrong file given as the roots
// (a key, say) never ends up in a bundle handed to clients.
func (c *CA) Bundle(systemRoots []byte) []byte { return Bundle(systemRoots, c.certPEM) }

// Bundle is CA.Bundle for a CA certificate read from its file (caPEM), for
// a command that has no business reading the CA's key.
func Bundle(systemRoots, caPEM []byte) []byte {
	var b bytes.Buffer
	for rest := systemRoots; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			_ = pem.Encode(&b, &pem.Block{Type: block.Type, Bytes: block.Bytes})
		}
	}
	b.Write(caPEM)
	return b.Bytes()
}

// String describes the CA by its certificate, never its key.
func (c *CA) String() string {
	return fmt.Sprintf("intercept.CA{subject=%q permits=%v notAfter=%s}",
		c.cert.Subject.String(), c.cert.PermittedDNSDomains, c.cert.NotAfter.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v cannot print the key either.
func (c *CA) GoString() string { return c.String() }

// Format prints String for every verb: without it, %d of a *CA would walk
// its fields.
func (c *CA) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue is what slog records for a CA.
func (c *CA) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("subject", c.cert.Subject.String()),
		slog.Any("permits", c.cert.PermittedDNSDomains),
		slog.Time("notAfter", c.cert.NotAfter),
	)
}
