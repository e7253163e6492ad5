package signertest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	sdkauth "github.com/oracle/oci-go-sdk/v65/common/auth"

	"github.com/ocisigner/ocisigner/signer"
)

// imdsGet GETs url with the given Authorization header values, as the
// SDK's httpGet does (it adds "Bearer Oracle").
func imdsGet(t *testing.T, method, url string, auth ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	return readResponse(t, resp, err)
}

// fetch GETs path under the service's base URL as the SDK does and wants a 200.
func fetch(t *testing.T, md *MetadataService, path string) []byte {
	t.Helper()
	r := imdsGet(t, "GET", md.BaseURL()+path, "Bearer Oracle")
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, r.Status, r.Body)
	}
	return r.Body
}

func parseCertPEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one CERTIFICATE PEM block: %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chainsToRoot verifies leaf through intermediate to md's root at when.
func chainsToRoot(t *testing.T, md *MetadataService, leaf, intermediate *x509.Certificate, when time.Time) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(md.Root())
	inters.AddCert(intermediate)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: when, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf does not chain to the root: %v", err)
	}
}

func TestMetadataServesInstanceIdentity(t *testing.T) {
	t.Parallel()
	md := NewMetadataService(t)
	if got := string(fetch(t, md, imdsRegionPath)); got != "phx" {
		t.Errorf("region = %q, want phx", got)
	}
	leaf := parseCertPEM(t, fetch(t, md, imdsCertPath))
	inter := parseCertPEM(t, fetch(t, md, imdsIntermediatePath))
	keyPEM := fetch(t, md, imdsKeyPath)

	wantLeaf, wantKey := md.Leaf()
	if !leaf.Equal(wantLeaf) || !inter.Equal(md.intermediateCert()) {
		t.Error("served certificates are not Leaf() and Intermediate()")
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "RSA PRIVATE KEY" {
		t.Fatalf("key.pem is not PKCS#1: %q", keyPEM)
	}
	key, err := signer.ParsePrivateKey(keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(wantKey) || !samePublicKey(&key.PublicKey, leaf.PublicKey.(*rsa.PublicKey)) {
		t.Error("key.pem is not the leaf's key")
	}
	if got := certTenancy(leaf); got != DefaultInstanceTenancy {
		t.Errorf("leaf tenancy = %q", got)
	}
	if !slices.Contains(leaf.Subject.OrganizationalUnit, "opc-instance:"+defaultInstanceID) {
		t.Errorf("leaf OUs = %q, want opc-instance:%s", leaf.Subject.OrganizationalUnit, defaultInstanceID)
	}
	chainsToRoot(t, md, leaf, inter, time.Now())
	for _, p := range []string{imdsRegionPath, imdsCertPath, imdsKeyPath, "/opc/v2" + imdsIntermediatePath} {
		if n := md.fetchCount(p); n != 1 {
			t.Errorf("Fetches(%s) = %d, want 1", p, n)
		}
	}
}

func TestMetadataRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		method string
		path   string // under the server's URL
		auth   []string
		status int
	}{
		{name: "no Authorization (IMDS v1 style)", method: "GET", path: "/opc/v2/identity/cert.pem", status: http.StatusUnauthorized},
		{name: "Bearer oracle in lower case", method: "GET", path: "/opc/v2/identity/cert.pem", auth: []string{"Bearer oracle"}, status: http.StatusUnauthorized},
		{name: "another bearer", method: "GET", path: "/opc/v2/identity/key.pem", auth: []string{"Bearer Other"}, status: http.StatusUnauthorized},
		{name: "Bearer Oracle twice", method: "GET", path: "/opc/v2/instance/region", auth: []string{"Bearer Oracle", "Bearer Oracle"}, status: http.StatusUnauthorized},
		{name: "IMDS v1 path", method: "GET", path: "/opc/v1/identity/cert.pem", auth: []string{"Bearer Oracle"}, status: http.StatusNotFound},
		{name: "unknown v2 path", method: "GET", path: "/opc/v2/identity/cert.der", auth: []string{"Bearer Oracle"}, status: http.StatusNotFound},
		{name: "POST", method: "POST", path: "/opc/v2/identity/cert.pem", auth: []string{"Bearer Oracle"}, status: http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			md := NewMetadataService(t)
			r := imdsGet(t, tc.method, md.URL+tc.path, tc.auth...)
			if r.Status != tc.status {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tc.status, r.Body)
			}
			if bytes.Contains(r.Body, []byte("BEGIN")) {
				t.Errorf("rejection served a PEM: %s", r.Body)
			}
			if n := md.fetchCount(tc.path); n != 0 {
				t.Errorf("Fetches = %d after a rejection", n)
			}
			reqs := md.Requests()
			if len(reqs) != 1 || reqs[0].Status != tc.status || reqs[0].Reason == "" {
				t.Errorf("recorded %+v", reqs)
			}
			t.Logf("reason: %s", reqs[0].Reason)
		})
	}
}

func TestMetadataRotateLeafServesNewPair(t *testing.T) {
	t.Parallel()
	md := NewMetadataService(t)
	md.SetClock(func() time.Time { return testNow })
	oldCert, oldKey := fetch(t, md, imdsCertPath), fetch(t, md, imdsKeyPath)

	md.RotateLeaf()
	newCert, newKey := fetch(t, md, imdsCertPath), fetch(t, md, imdsKeyPath)
	if bytes.Equal(oldCert, newCert) || bytes.Equal(oldKey, newKey) {
		t.Fatal("cert.pem or key.pem unchanged by RotateLeaf")
	}
	leaf, wantKey := md.Leaf()
	if got := parseCertPEM(t, newCert); !got.Equal(leaf) {
		t.Error("cert.pem is not the new Leaf()")
	}
	key, err := signer.ParsePrivateKey(newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(wantKey) || !samePublicKey(&key.PublicKey, leaf.PublicKey.(*rsa.PublicKey)) {
		t.Error("key.pem is not the new leaf's key")
	}
	old, err := signer.ParsePrivateKey(oldKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if old.Equal(key) {
		t.Error("rotation kept the key")
	}
	// The new leaf is dated by the service clock.
	if !leaf.NotBefore.Equal(testNow.Add(-time.Hour)) || !leaf.NotAfter.Equal(testNow.Add(leafValidity)) {
		t.Errorf("validity %v..%v, want around %v", leaf.NotBefore, leaf.NotAfter, testNow)
	}
	chainsToRoot(t, md, leaf, md.intermediateCert(), testNow)
	if a, b := md.fetchCount(imdsCertPath), md.fetchCount(imdsKeyPath); a != 2 || b != 2 {
		t.Errorf("Fetches = %d, %d; want 2, 2", a, b)
	}
}

func TestMetadataSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		set   func(md *MetadataService)
		check func(t *testing.T, md *MetadataService)
	}{
		{name: "region by its long name",
			set: func(md *MetadataService) { md.SetRegion("us-ashburn-1") },
			check: func(t *testing.T, md *MetadataService) {
				if got := string(fetch(t, md, imdsRegionPath)); got != "us-ashburn-1" {
					t.Errorf("region = %q", got)
				}
			}},
		{name: "tenancy reissues the leaf",
			set: func(md *MetadataService) { md.setTenancy("ocid1.tenancy.oc1..moved") },
			check: func(t *testing.T, md *MetadataService) {
				leaf := parseCertPEM(t, fetch(t, md, imdsCertPath))
				if got := certTenancy(leaf); got != "ocid1.tenancy.oc1..moved" || md.currentTenancy() != got {
					t.Errorf("leaf tenancy = %q, currentTenancy() = %q", got, md.currentTenancy())
				}
			}},
		{name: "FailNext then serves",
			set: func(md *MetadataService) { md.FailNext(1, http.StatusInternalServerError) },
			check: func(t *testing.T, md *MetadataService) {
				if r := imdsGet(t, "GET", md.BaseURL()+imdsRegionPath, "Bearer Oracle"); r.Status != http.StatusInternalServerError {
					t.Errorf("first status = %d", r.Status)
				}
				fetch(t, md, imdsRegionPath)
				if reqs := md.Requests(); len(reqs) != 2 || !reqs[0].Failed || reqs[1].Failed {
					t.Errorf("recorded %+v", reqs)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			md := NewMetadataService(t)
			tc.set(md)
			tc.check(t, md)
		})
	}
}

// Clients read cert.pem while the leaf rotates: every answer must be a whole
// certificate of the service (-race checks the rest).
func TestMetadataRotationUnderConcurrentReads(t *testing.T) {
	t.Parallel()
	md := NewMetadataService(t)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				req, _ := http.NewRequest("GET", md.BaseURL()+imdsCertPath, nil)
				req.Header.Set("Authorization", "Bearer Oracle")
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				block, _ := pem.Decode(b)
				if err != nil || resp.StatusCode != http.StatusOK || block == nil {
					errs <- fmt.Errorf("status %d, body %q, read error %v", resp.StatusCode, b, err)
					return
				}
				if _, err := x509.ParseCertificate(block.Bytes); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	md.RotateLeaf()
	md.RotateLeaf()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := md.fetchCount(imdsCertPath); n != 160 {
		t.Errorf("Fetches = %d, want 160", n)
	}
}

// TestInstancePrincipalThroughOCIGoSDK has oci-go-sdk's instance principal
// provider read the metadata stand-in and federate with the auth stand-in:
// the stand-ins must accept exactly what the SDK sends, and answer what it
// parses. It sets environment variables, so it does not run in parallel.
func TestInstancePrincipalThroughOCIGoSDK(t *testing.T) {
	is := NewIssuer(t)
	md := NewMetadataService(t)
	auth := NewAuthService(t, is)
	auth.TrustRoot(md.Root())
	t.Setenv("OCI_METADATA_BASE_URL", md.BaseURL())
	t.Setenv("OCI_SDK_AUTH_CLIENT_REGION_URL", auth.URL)

	p, err := sdkauth.InstancePrincipalConfigurationProvider()
	if err != nil {
		t.Fatalf("SDK provider: %v", err)
	}
	keyID, err := p.KeyID()
	if err != nil {
		for _, e := range auth.Requests() {
			t.Logf("auth service: %d %s", e.Status, e.Reason)
		}
		t.Fatalf("SDK federation: %v", err)
	}
	if region, err := p.Region(); err != nil || region != "us-phoenix-1" {
		t.Errorf("SDK region = %q, %v", region, err)
	}
	sessKey, err := p.PrivateRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := bytes.CutPrefix([]byte(keyID), []byte("ST$"))
	if !ok {
		t.Fatalf("SDK keyId %q is not ST$", keyID)
	}
	pub, tok, err := is.Verify(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(pub, &sessKey.PublicKey) || tok.PrincipalType != "instance" || tok.Tenant != md.currentTenancy() {
		t.Errorf("token: ptype %q tenant %q, jwk matches SDK key: %v", tok.PrincipalType, tok.Tenant, samePublicKey(pub, &sessKey.PublicKey))
	}

	for _, path := range []string{imdsRegionPath, imdsCertPath, imdsKeyPath, imdsIntermediatePath} {
		if md.fetchCount(path) == 0 {
			t.Errorf("SDK did not fetch %s", path)
		}
	}
	reqs := auth.Requests()
	if len(reqs) != 1 {
		t.Fatalf("auth service got %d requests, want 1", len(reqs))
	}
	e := reqs[0]
	if want := []string{"date", "(request-target)", "content-length", "content-type", "x-content-sha256"}; !slices.Equal(e.SignedHeaders, want) {
		t.Errorf("SDK signed %q, want %q", e.SignedHeaders, want)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(e.Body, &body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range body {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"certificate", "fingerprintAlgorithm", "intermediateCertificates", "publicKey"}; !slices.Equal(names, want) {
		t.Errorf("SDK body fields %q, want %q", names, want)
	}
	t.Logf("SDK federated: keyId %s, signed %q", e.KeyID, e.SignedHeaders)
}
