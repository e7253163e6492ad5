package signertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Paths the instance metadata service answers, relative to BaseURL, as
// oci-go-sdk's instance principal provider reads them.
const (
	imdsRegionPath       = "/instance/region"
	imdsCertPath         = "/identity/cert.pem"
	imdsKeyPath          = "/identity/key.pem"
	imdsIntermediatePath = "/identity/intermediate.pem"
)

// imdsV2 is the prefix of IMDS v2 paths; v1 (/opc/v1), which needs no
// header, is not served, so a client still using it fails loudly.
const imdsV2 = "/opc/v2"

// Defaults of a new MetadataService.
const (
	defaultRegion          = "phx"
	DefaultInstanceTenancy = "ocid1.tenancy.oc1..instancetest"
	defaultInstanceID      = "ocid1.instance.oc1.phx.instancetest"
)

// leafValidity is how long an instance leaf certificate is valid from its
// issue (it is also valid from an hour before, for clocks slightly behind).
// IMDS rotates leaves well before they expire.
const leafValidity = 24 * time.Hour

// MetadataService is a stand-in for an instance's metadata service (IMDS
// v2, http://169.254.169.254/opc/v2): it serves the region and the
// instance's identity, a leaf certificate and its key issued by an
// intermediate CA under a root CA of its own. Hand Root() to
// AuthService.TrustRoot so that the auth stand-in federates the instance.
// It listens on 127.0.0.1 only.
type MetadataService struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port

	t testing.TB

	mu         sync.Mutex
	clock      func() time.Time
	region     string
	tenancy    string
	instanceID string
	root       *certAuthority
	inter      *certAuthority
	leaf       *x509.Certificate
	leafKey    *rsa.PrivateKey
	leafPEM    []byte
	leafKeyPEM []byte
	leaves     int // leaves issued so far; picks the next leaf's key
	fetches    map[string]int

	fail failer
	log  exchangeLog
}

// NewMetadataService starts a metadata service with a fresh root and
// intermediate CA and a leaf for defaultInstanceID in DefaultInstanceTenancy;
// t.Cleanup closes it.
func NewMetadataService(t testing.TB) *MetadataService {
	t.Helper()
	m := &MetadataService{t: t, clock: time.Now, region: defaultRegion, tenancy: DefaultInstanceTenancy,
		instanceID: defaultInstanceID, fetches: make(map[string]int)}
	var err error
	if m.root, err = newCA("signertest IMDS root CA", nil); err != nil {
		t.Fatalf("signertest: %v", err)
	}
	if m.inter, err = newCA("signertest IMDS intermediate CA", m.root); err != nil {
		t.Fatalf("signertest: %v", err)
	}
	m.RotateLeaf()
	hs := startLoopback(t, m, nil)
	m.URL, m.Addr = hs.URL, hs.Listener.Addr().String()
	return m
}

// BaseURL is what a client takes in place of http://169.254.169.254/opc/v2
// (oci-go-sdk reads it from OCI_METADATA_BASE_URL).
func (m *MetadataService) BaseURL() string { return m.URL + imdsV2 }

// SetClock sets the clock leaves issued from now on are dated by; nil
// restores time.Now. It does not reissue the current leaf: call RotateLeaf.
func (m *MetadataService) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock = now
}

// SetRegion sets what /instance/region answers: a short code such as "phx"
// (what IMDS answers for most regions) or a region name such as
// "us-ashburn-1"; the client must understand both.
func (m *MetadataService) SetRegion(region string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.region = region
}

// Region is what /instance/region answers.
func (m *MetadataService) Region() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.region
}

// setTenancy moves the instance to another tenancy. The tenancy is part of
// the leaf certificate, so this issues a new leaf (with a new key), as
// RotateLeaf does.
func (m *MetadataService) setTenancy(ocid string) {
	m.t.Helper()
	m.mu.Lock()
	m.tenancy = ocid
	m.mu.Unlock()
	m.RotateLeaf()
}

// currentTenancy is the tenancy OCID the leaf certificate names (opc-tenant:).
func (m *MetadataService) currentTenancy() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tenancy
}

// currentInstanceID is the instance OCID the leaf certificate names (opc-instance:).
func (m *MetadataService) currentInstanceID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.instanceID
}

// Root is the root CA certificate, for AuthService.TrustRoot.
func (m *MetadataService) Root() *x509.Certificate { return m.root.cert }

// intermediateCert is the CA certificate that issues the leaves, which
// /identity/intermediate.pem serves.
func (m *MetadataService) intermediateCert() *x509.Certificate { return m.inter.cert }

// Leaf returns the current leaf certificate and its private key.
func (m *MetadataService) Leaf() (*x509.Certificate, *rsa.PrivateKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaf, m.leafKey
}

// RotateLeaf issues a new leaf certificate with a new key, dated by the
// service clock, as IMDS does every so often: from then on cert.pem and
// key.pem serve the new pair. Leaf keys come from a process-wide pool of
// RSA keys (the n-th leaf of every service has the same key), so that
// rotating costs a key generation only the first time any test rotates
// that far. Call it from the test's goroutine; requests may be in flight.
func (m *MetadataService) RotateLeaf() {
	m.t.Helper()
	m.mu.Lock()
	n := m.leaves
	m.leaves++
	now, tenancy, instance := m.clock(), m.tenancy, m.instanceID
	m.mu.Unlock()

	key, err := leafKey(n)
	if err != nil {
		m.t.Fatalf("signertest: %v", err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName: instance,
			// The OU values IMDS leaves carry; the SDK and the auth service
			// read the tenancy from opc-tenant.
			OrganizationalUnit: []string{
				"opc-certtype:instance",
				"opc-compartment:" + tenancy, // the root compartment is the tenancy
				"opc-instance:" + instance,
				"opc-tenant:" + tenancy,
			},
		},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leaf, err := m.inter.issue(tmpl, &key.PublicKey)
	if err != nil {
		m.t.Fatalf("signertest: issuing leaf: %v", err)
	}
	// IMDS serves the key unencrypted in PKCS#1.
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})

	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaf, m.leafKey, m.leafPEM, m.leafKeyPEM = leaf, key, certPEM(leaf), keyPEM
}

// FailNext answers the next n requests, whatever they are, with status; n
// <= 0 stops failing.
func (m *MetadataService) FailNext(n, status int) { m.fail.set(n, status) }

// fetchCount counts the successful (200) answers for path, given relative to
// BaseURL (imdsCertPath) or in full (/opc/v2/identity/cert.pem).
func (m *MetadataService) fetchCount(path string) int {
	if p, ok := strings.CutPrefix(path, imdsV2); ok {
		path = p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetches[path]
}

// Requests returns what the service has received so far, in completion order.
func (m *MetadataService) Requests() []Exchange { return m.log.all() }

// ServeHTTP answers a request as IMDS v2 does.
func (m *MetadataService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := m.log.start(r)
	defer m.log.add(e)
	fail := func(status int, message, reason string) {
		e.Status, e.Message, e.Reason = status, message, reason
		http.Error(w, message, status)
	}
	if status, ok := m.fail.take(); ok {
		e.Failed = true
		fail(status, http.StatusText(status), fmt.Sprintf("FailNext: answering %d", status))
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, imdsV2)
	if !ok || rel == "" {
		fail(http.StatusNotFound, "Not Found", fmt.Sprintf("%s is not under %s (IMDS v1 is not served)", r.URL.Path, imdsV2))
		return
	}
	if a := r.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer Oracle" {
		fail(http.StatusUnauthorized, "Unauthorized", fmt.Sprintf("IMDS v2 wants exactly one header Authorization: Bearer Oracle; got %q", a))
		return
	}
	if r.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, "Method Not Allowed", fmt.Sprintf("%s: only GET is answered", r.Method))
		return
	}

	m.mu.Lock()
	var body []byte
	switch rel {
	case imdsRegionPath:
		body = []byte(m.region)
	case imdsCertPath:
		body = m.leafPEM
	case imdsKeyPath:
		body = m.leafKeyPEM
	case imdsIntermediatePath:
		body = certPEM(m.inter.cert)
	}
	if body != nil {
		m.fetches[rel]++
	}
	m.mu.Unlock()

	if body == nil {
		fail(http.StatusNotFound, "Not Found", fmt.Sprintf("no metadata at %s", r.URL.Path))
		return
	}
	e.Status = http.StatusOK
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

var (
	leafKeyMu sync.Mutex
	leafKeys  []*rsa.PrivateKey
)

// leafKey returns the i-th RSA-2048 key for instance leaf certificates,
// generating it the first time it is asked for. These keys are apart from
// Key(t, i), so a test's own keys never double as an instance's.
func leafKey(i int) (*rsa.PrivateKey, error) {
	if i < leafKeysN {
		return fixedKey(leafKeysAt + i)
	}
	leafKeyMu.Lock()
	defer leafKeyMu.Unlock()
	for len(leafKeys) <= i-leafKeysN {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generating leaf key: %w", err)
		}
		k.Precompute()
		leafKeys = append(leafKeys, k)
	}
	return leafKeys[i-leafKeysN], nil
}

// certAuthority is a CA of a stand-in. Its key is ECDSA P-256, fresh for
// every CA: generating one is instant where RSA takes a noticeable time,
// and a fresh key per CA means a certificate from one stand-in can never
// verify under another's CA. Nothing a client does depends on the CA's key
// type: it forwards the intermediate, or trusts the root through a pool.
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a root CA (parent nil) or an intermediate under parent. Its
// name carries its serial so no two CAs share a subject. It is valid for
// ten years either side of now, so any test clock falls inside.
func newCA(name string, parent *certAuthority) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s %x", name, serial), Organization: []string{"signertest"}},
		NotBefore:             now.AddDate(-10, 0, 0),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca := &certAuthority{key: key}
	issuer := ca
	parentCert := tmpl
	if parent != nil {
		issuer, parentCert = parent, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, issuer.key)
	if err != nil {
		return nil, fmt.Errorf("creating %s certificate: %w", name, err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("parsing %s certificate: %w", name, err)
	}
	return ca, nil
}

// issue signs a certificate for pub from tmpl, with a fresh serial number.
func (ca *certAuthority) issue(tmpl *x509.Certificate, pub any) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return c, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
