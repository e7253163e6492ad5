package intercept

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ocisigner/ocisigner/signer"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newTestCA mints a CA into a fresh state directory.
func newTestCA(t *testing.T, patterns ...string) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	ca, err := LoadOrCreate(dir, patterns, t0)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestCAStateFilesModes(t *testing.T) {
	ca, dir := newTestCA(t)
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, KeyFileName): 0o600, filepath.Join(dir, CertFileName): 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	again, err := LoadOrCreate(dir, nil, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("a second start minted a new CA instead of loading the one on disk")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, CertFileName))
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Error("CertPEM differs from the certificate file")
	}
}

func TestCAShape(t *testing.T) {
	ca, _ := newTestCA(t, "*.corp.example", "api.test.example:8443", "x.oraclecloud.com", "*.oraclecloud.com", "svc.corp.example")
	c := ca.Certificate()
	if !c.IsCA || !c.MaxPathLenZero || c.MaxPathLen != 0 || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("not a leaf-only CA: IsCA=%v MaxPathLen=%d zero=%v KeyUsage=%v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical: a client that does not know them would ignore them")
	}
	want := append(signer.RealmDomains(), "api.test.example", "corp.example")
	slices.Sort(want)
	if !slices.Equal(c.PermittedDNSDomains, want) {
		t.Errorf("permitted %v, want %v", c.PermittedDNSDomains, want)
	}
	if !slices.Equal(c.ExcludedDNSDomains, []string{".api.test.example"}) {
		t.Errorf("excluded %v, want only the names below the exact host", c.ExcludedDNSDomains)
	}
	if !excludesAllIPs(c.ExcludedIPRanges) || len(c.PermittedIPRanges) > 0 {
		t.Errorf("IP ranges: excluded %v permitted %v; every IP must be excluded", c.ExcludedIPRanges, c.PermittedIPRanges)
	}
	if c.NotAfter.Sub(t0) < 5*365*24*time.Hour {
		t.Errorf("the CA expires at %v: clients would have to trust a new one too soon", c.NotAfter)
	}
}

// handLeaf signs any leaf with the CA's key, as someone holding the key
// could: Issue would refuse these names.
func handLeaf(t *testing.T, ca *CA, dns []string, ips []net.IP) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "hand-made"},
		DNSNames: dns, IPAddresses: ips,
		NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// constraintCases are leaves signed by hand with the key of a CA made for
// "*.corp.example" and "api.test.example": inside the constraints or not.
var constraintCases = []struct {
	name   string
	dns    []string
	ips    []net.IP
	inside bool
}{
	{"a realm host", []string{"objectstorage.us-ashburn-1.oraclecloud.com"}, nil, true},
	{"another realm's host", []string{"identity.eu-frankfurt-2.oci.oraclecloud.eu"}, nil, true},
	{"the operator's domain", []string{"svc.corp.example"}, nil, true},
	{"the operator's exact host", []string{"api.test.example"}, nil, true},
	{"a public site", []string{"www.example.com"}, nil, false},
	{"a realm domain as a label", []string{"oraclecloud.com.evil.example"}, nil, false},
	{"a name ending like a realm domain", []string{"evil-oraclecloud.com"}, nil, false},
	{"below the exact host", []string{"x.api.test.example"}, nil, false},
	{"a permitted name and a foreign one", []string{"objectstorage.us-ashburn-1.oraclecloud.com", "www.example.com"}, nil, false},
	{"an IPv4 SAN", []string{"objectstorage.us-ashburn-1.oraclecloud.com"}, []net.IP{net.ParseIP("127.0.0.1")}, false},
	{"an IPv6 SAN", nil, []net.IP{net.ParseIP("::1")}, false},
}

func TestCANameConstraintsGo(t *testing.T) {
	ca, _ := newTestCA(t, "*.corp.example", "api.test.example")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	for _, c := range constraintCases {
		t.Run(c.name, func(t *testing.T) {
			leaf := handLeaf(t, ca, c.dns, c.ips)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0})
			if c.inside && err != nil {
				t.Fatalf("a leaf inside the constraints does not verify: %v", err)
			}
			var inv x509.CertificateInvalidError
			if !c.inside && (!errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName) {
				t.Fatalf("a leaf outside the constraints: err = %v, want CANotAuthorizedForThisName", err)
			}
		})
	}
}

func TestCANameConstraintsOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("the openssl command is needed to check the CA's name constraints as OpenSSL enforces them: install Debian's openssl package (apt-get install openssl); CI installs it")
	}
	ca, _ := newTestCA(t, "*.corp.example", "api.test.example")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T, leafPEM []byte, args ...string) (string, error) {
		leafFile := filepath.Join(t.TempDir(), "leaf.pem")
		if err := os.WriteFile(leafFile, leafPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"verify", "-x509_strict", "-attime", fmt.Sprint(t0.Unix()), "-CAfile", caFile}, append(args, leafFile)...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	for _, c := range constraintCases {
		t.Run(c.name, func(t *testing.T) {
			leaf := handLeaf(t, ca, c.dns, c.ips)
			out, err := verify(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
			if c.inside && err != nil {
				t.Fatalf("openssl refuses a leaf inside the constraints: %v\n%s", err, out)
			}
			if !c.inside && (err == nil || !strings.Contains(out, "subtree violation")) {
				t.Fatalf("openssl verify of a leaf outside the constraints: %v\n%s\nwant a permitted or excluded subtree violation", err, out)
			}
		})
	}
	t.Run("an issued leaf, for its name", func(t *testing.T) {
		chain, _, _, err := ca.Issue("objectstorage.us-ashburn-1.oraclecloud.com", t0, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := verify(t, chain, "-purpose", "sslserver", "-verify_hostname", "objectstorage.us-ashburn-1.oraclecloud.com"); err != nil {
			t.Fatalf("openssl -x509_strict refuses an issued leaf: %v\n%s", err, out)
		}
		if out, err := verify(t, chain, "-verify_hostname", "identity.us-ashburn-1.oraclecloud.com"); err == nil {
			t.Fatalf("openssl accepts an issued leaf for another name:\n%s", out)
		}
	})
}

func TestCAIssueLeaf(t *testing.T) {
	ca, _ := newTestCA(t, "*.corp.example")
	const name = "objectstorage.us-ashburn-1.oraclecloud.com"
	chainPEM, keyPEM, notAfter, err := ca.Issue(name, t0, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(chainPEM)
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("the chain of a self-signed CA's leaf is the leaf alone; got %d extra bytes", len(rest))
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.DNSNames, []string{name}) || len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("SANs DNS=%v IP=%v URI=%v email=%v; want exactly the name", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(leaf.UnknownExtKeyUsage) > 0 || leaf.IsCA {
		t.Errorf("EKU %v (unknown %v), IsCA %v; want serverAuth only", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, leaf.IsCA)
	}
	if span := leaf.NotAfter.Sub(leaf.NotBefore); span > MaxLeafValidity {
		t.Errorf("valid for %s; at most %s", span, MaxLeafValidity)
	}
	if !leaf.NotAfter.Equal(notAfter) || !notAfter.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("notAfter %v (returned %v), want %v", leaf.NotAfter, notAfter, t0.Add(30*time.Minute))
	}
	kb, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() || !ek.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("the key is %T, not the P-256 key of the certificate", key)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: t0}); err != nil {
		t.Errorf("the leaf does not verify for its name: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "identity.us-ashburn-1.oraclecloud.com", CurrentTime: t0}); err == nil {
		t.Error("the leaf verifies for another name")
	}
}

func TestCAIssueRefuses(t *testing.T) {
	ca, _ := newTestCA(t, "api.test.example")
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{
		{"www.example.com", time.Minute},
		{"x.api.test.example", time.Minute},
		{"oraclecloud.com.evil.example", time.Minute},
		{"ObjectStorage.us-ashburn-1.oraclecloud.com", time.Minute}, // callers lower-case first
		{"10.0.0.1", time.Minute},
		{"*.oraclecloud.com", time.Minute},
		{"", time.Minute},
		{"objectstorage.us-ashburn-1.oraclecloud.com", 0},
		{"objectstorage.us-ashburn-1.oraclecloud.com", MaxLeafTTL + time.Second},
	} {
		if _, _, _, err := ca.Issue(c.name, t0, c.ttl); err == nil {
			t.Errorf("Issue(%q, ttl %s) minted a leaf", c.name, c.ttl)
		}
	}
	if _, _, _, err := ca.Issue("api.test.example", t0, MaxLeafTTL); err != nil {
		t.Errorf("the operator's exact host: %v", err)
	}
}

func TestCAConstraintsChanged(t *testing.T) {
	_, dir := newTestCA(t, "*.corp.example", "api.test.example")
	// Narrower than the CA on disk: loaded, and Issue keeps to what is asked now.
	ca, err := LoadOrCreate(dir, []string{"api.test.example"}, t0)
	if err != nil {
		t.Fatalf("a CA permitting more than needed was refused: %v", err)
	}
	if _, _, _, err := ca.Issue("svc.corp.example", t0, time.Minute); !errors.Is(err, ErrNameNotPermitted) {
		t.Errorf("a host no longer allowed got a leaf: %v", err)
	}
	// Wider: refused, naming what is missing and what to do.
	_, err = LoadOrCreate(dir, []string{"*.corp.example", "*.lab.example", "db.test.example"}, t0)
	if !errors.Is(err, ErrConstraints) {
		t.Fatalf("err = %v, want ErrConstraints", err)
	}
	for _, want := range []string{"*.lab.example", "db.test.example", filepath.Join(dir, KeyFileName), "--allow-host"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if _, notList, _ := strings.Cut(err.Error(), "but not "); strings.Contains(notList, "corp.example") {
		t.Errorf("the error calls a covered domain missing: %v", err)
	}
}

func TestCAIncompleteStateDir(t *testing.T) {
	_, dir := newTestCA(t)
	if err := os.Remove(filepath.Join(dir, CertFileName)); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(dir, nil, t0)
	if !errors.Is(err, ErrCA) || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("err = %v, want ErrCA saying what to remove", err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFileName)); err != nil {
		t.Error("the key of the incomplete CA was touched")
	}
}

// writeCA writes a CA made from tmpl (signed by its own key) and its key.
func writeCA(t *testing.T, tmpl *x509.Certificate, keyPerm os.FileMode) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = randomSerial(), t0.Add(-time.Hour), t0.Add(time.Hour*24*365)
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), keyPerm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, keyPerm); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestCALoadOperatorCA(t *testing.T) {
	constrained := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "operator CA"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
			PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"oraclecloud.com"}, ExcludedIPRanges: allIPs(),
		}
	}
	certFile, keyFile := writeCA(t, constrained(), 0o600)
	ca, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatalf("a constrained operator CA: %v", err)
	}
	if _, _, _, err := ca.Issue("objectstorage.us-ashburn-1.oraclecloud.com", t0, time.Minute); err != nil {
		t.Errorf("a name the operator's CA permits: %v", err)
	}
	if _, _, _, err := ca.Issue("objectstorage.eu-frankfurt-2.oraclecloud.eu", t0, time.Minute); !errors.Is(err, ErrNameNotPermitted) {
		t.Errorf("a name outside the operator's CA: %v", err)
	}
	if err := ca.Covers(nil); !errors.Is(err, ErrConstraints) || !strings.Contains(err.Error(), "oraclecloud.eu") {
		t.Errorf("Covers of the realm domains by a CA for oraclecloud.com only: %v", err)
	}

	for _, c := range []struct {
		name string
		edit func(*x509.Certificate)
		perm os.FileMode
	}{
		{"no name constraints", func(c *x509.Certificate) { c.PermittedDNSDomains, c.ExcludedIPRanges = nil, nil }, 0o600},
		{"constraints not critical", func(c *x509.Certificate) { c.PermittedDNSDomainsCritical = false }, 0o600},
		{"IPs not excluded", func(c *x509.Certificate) { c.ExcludedIPRanges = nil }, 0o600},
		{"only IPv4 excluded", func(c *x509.Certificate) { c.ExcludedIPRanges = allIPs()[:1] }, 0o600},
		{"not a CA", func(c *x509.Certificate) { c.IsCA = false }, 0o600},
		{"a key others may read", func(*x509.Certificate) {}, 0o644},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl := constrained()
			c.edit(tmpl)
			certFile, keyFile := writeCA(t, tmpl, c.perm)
			if _, err := Load(certFile, keyFile); !errors.Is(err, ErrCA) {
				t.Fatalf("err = %v, want ErrCA", err)
			}
		})
	}
	t.Run("the key of another certificate", func(t *testing.T) {
		certFile, _ := writeCA(t, constrained(), 0o600)
		_, otherKey := writeCA(t, constrained(), 0o600)
		if _, err := Load(certFile, otherKey); !errors.Is(err, ErrCA) || !strings.Contains(err.Error(), "not the key") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCABundle(t *testing.T) {
	ca, _ := newTestCA(t)
	other, _ := newTestCA(t)
	keyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not for a bundle")})
	roots := append(append([]byte("# a comment line\n"), other.CertPEM()...), keyBlock...)
	b := ca.Bundle(roots)
	var got [][]byte
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			t.Errorf("the bundle holds a %s block", block.Type)
		}
		got = append(got, block.Bytes)
	}
	if len(got) != 2 || !bytes.Equal(got[0], other.cert.Raw) || !bytes.Equal(got[1], ca.cert.Raw) {
		t.Fatalf("bundle of %d certificates; want the system root, then this CA", len(got))
	}
	if !bytes.Equal(ca.Bundle(nil), ca.CertPEM()) {
		t.Error("with no system roots the bundle is not the CA alone")
	}
}

// TestCAKeyNeverPrinted formats and logs a CA every way a careless caller
// might, and triggers Load's errors on a key, and looks for the key in the
// output in each encoding it has.
func TestCAKeyNeverPrinted(t *testing.T) {
	ca, dir := newTestCA(t)
	keyFile := filepath.Join(dir, KeyFileName)
	keyPEM, _ := os.ReadFile(keyFile)
	block, _ := pem.Decode(keyPEM)
	raw, err := ca.key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw)
	secrets := []string{
		string(keyPEM), base64.StdEncoding.EncodeToString(block.Bytes)[:40],
		d.String(), d.Text(16), hex.EncodeToString(raw), fmt.Sprint(raw),
	}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		fmt.Fprintf(&out, verb+"\n", ca)
		fmt.Fprintf(&out, verb+"\n", *ca)
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("ca", "ca", ca, "value", *ca)
	}
	// Errors of Load on the real key: wrong mode, and a certificate it does not match.
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = Load(filepath.Join(dir, CertFileName), keyFile)
	fmt.Fprintln(&out, err)
	_ = os.Chmod(keyFile, 0o600)
	otherCert, _ := writeCA(t, &x509.Certificate{IsCA: true, PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"oraclecloud.com"}, ExcludedIPRanges: allIPs()}, 0o600)
	_, err = Load(otherCert, keyFile)
	fmt.Fprintln(&out, err)
	// A damaged key file: the parser's error must not quote it.
	broken := filepath.Join(t.TempDir(), "broken.pem")
	damaged := bytes.Clone(block.Bytes)
	damaged[len(damaged)/2] ^= 0xff
	_ = os.WriteFile(broken, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: damaged}), 0o600)
	_, err = Load(filepath.Join(dir, CertFileName), broken)
	fmt.Fprintln(&out, err)
	secrets = append(secrets, base64.StdEncoding.EncodeToString(damaged)[:40])
	if out.Len() == 0 || !strings.Contains(out.String(), "ocisigner interception CA") {
		t.Fatal("nothing was printed: the test shows nothing")
	}
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Fatalf("the CA key appears in printed output (%.20q…):\n%s", s, out.String())
		}
	}
}

func TestLooksLikeOCIEndpoint(t *testing.T) {
	for name, ok := range map[string]bool{
		"objectstorage.us-ashburn-1.oraclecloud.com":              true,
		"identity.eu-frankfurt-2.oci.oraclecloud.eu":              true,
		"inference.generativeai.us-chicago-1.oci.oraclecloud.com": true,
		"idcs-0123abcd.identity.oraclecloud.com":                  true,
		"ns.objectstorage.uk-gov-london-1.oraclegovcloud.uk":      true,
		"oraclecloud.com":     false,
		"www.oraclecloud.com": false,
		"objectstorage.us-ashburn-1.oraclecloud.com.evil.example": false,
		"evil-oraclecloud.com":                       false,
		"x.evil-oraclecloud.com":                     false,
		"ObjectStorage.us-ashburn-1.oraclecloud.com": false, // the SDS lower-cases first
		NoSNIName:  false,
		"*":        false,
		"":         false,
		"10.0.0.1": false,
	} {
		if err := LooksLikeOCIEndpoint(name); (err == nil) != ok {
			t.Errorf("LooksLikeOCIEndpoint(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// The key file's mode: the owner's alone, unless root owns it and the
// signer is not root, when group read is allowed too (a Kubernetes Secret
// mounted with the pod's fsGroup: kubelet turns defaultMode 0400 into
// 0440, owned by root).
func TestCAKeyFileMode(t *testing.T) {
	const signer, root = 65532, 0
	for _, tc := range []struct {
		name       string
		perm       os.FileMode
		owner      int
		ownerKnown bool
		euid       int
		ok         bool
	}{
		{"own key 0600", 0o600, signer, true, signer, true},
		{"own key 0400", 0o400, signer, true, signer, true},
		{"own key group-readable", 0o640, signer, true, signer, false},
		{"own key 0440", 0o440, signer, true, signer, false},
		{"own key world-readable", 0o604, signer, true, signer, false},
		{"Secret with fsGroup: root's, 0440", 0o440, root, true, signer, true},
		{"root's, 0640", 0o640, root, true, signer, true},
		{"root's, group-writable", 0o460, root, true, signer, false},
		{"root's, world-readable", 0o444, root, true, signer, false},
		{"root's, read by root itself", 0o440, root, true, root, false},
		{"another user's, group-readable", 0o440, 1000, true, signer, false},
		{"owner unknown, group-readable", 0o440, root, false, signer, false},
		{"owner unknown, 0600", 0o600, root, false, signer, true},
	} {
		err := keyModeAllowed(tc.perm, tc.owner, tc.ownerKnown, tc.euid)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want allowed %v", tc.name, err, tc.ok)
		}
	}
	// Through Load: the file is the test's own (whatever uid runs it), so
	// group read is refused and 0400 is not.
	certFile, keyFile := writeCA(t, &x509.Certificate{IsCA: true, PermittedDNSDomainsCritical: true,
		PermittedDNSDomains: []string{"oraclecloud.com"}, ExcludedIPRanges: allIPs()}, 0o440)
	if _, err := Load(certFile, keyFile); err == nil || !errors.Is(err, ErrCA) || !strings.Contains(err.Error(), "0440") {
		t.Errorf("own key 0440: %v, want refused naming the mode", err)
	}
	if err := os.Chmod(keyFile, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(certFile, keyFile); err != nil {
		t.Errorf("own key 0400: %v", err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if owner, ok := fileOwner(fi); !ok || owner != os.Geteuid() {
		t.Errorf("fileOwner = %d, %v; want the test's uid %d", owner, ok, os.Geteuid())
	}
}

// A hostile name is echoed in logs and in the observer's events (and from
// there in metrics) as capName shortens it: cut at byte 256 in the middle
// of a multi-byte character, it would put invalid UTF-8 there. (Errors
// quote it with %q, which escapes such bytes anyway.)
func TestHostileNamesAreEchoedWhole(t *testing.T) {
	name := "a" + strings.Repeat("é", 300) + ".oraclecloud.com" // "é" is two bytes: byte 256 falls inside one
	got := capName(name)
	if !utf8.ValidString(got) {
		t.Errorf("capName cut a character in half: %q", got)
	}
	if !strings.HasSuffix(got, "…") || len(got) > 256+len("…") || len(got) < 250 {
		t.Errorf("capName gave %d bytes: %q", len(got), got)
	}
	if short := "objectstorage.us-ashburn-1.oraclecloud.com"; capName(short) != short {
		t.Errorf("capName changed a short name: %q", capName(short))
	}
}
