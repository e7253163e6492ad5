package credentials

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// Environment of the principals configured by environment.
const (
	EnvRPVersion    = "OCI_RESOURCE_PRINCIPAL_VERSION"
	EnvRPST         = "OCI_RESOURCE_PRINCIPAL_RPST"
	EnvRPPrivatePEM = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"
	EnvRPPassphrase = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"
	EnvRPRegion     = "OCI_RESOURCE_PRINCIPAL_REGION"
	EnvK8sHost      = "KUBERNETES_SERVICE_HOST"
	EnvSACertPath   = "OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH"
)

// WorkloadIdentity returns the credentials of an OKE workload: the pod's
// service-account token is exchanged at the cluster's proxymux
// (https://$KUBERNETES_SERVICE_HOST:12250/resourcePrincipalSessionTokens)
// for a resource-principal session token bound to a fresh in-memory session
// key, renewed before it expires. The service-account token is read again
// at each renewal, since Kubernetes rotates projected tokens.
func WorkloadIdentity(opts ...Option) (*Source, error) {
	o := newOptions(opts)
	f, err := newWorkloadFetcher(&o)
	if err != nil {
		return nil, err
	}
	return newSource(string(signer.KindWorkload), f, &o, true), nil
}

func newWorkloadFetcher(po *options) (*workload, error) {
	o := *po // the endpoint and paths are this principal's own
	if p := o.getenv(EnvSACertPath); p != "" && o.saCAPath == DefaultSACAPath {
		o.saCAPath = p
	}
	if o.workloadURL == "" {
		host := o.getenv(EnvK8sHost)
		if host == "" {
			return nil, &signer.Error{Kind: signer.ErrConfig, Profile: "oke_workload_identity",
				Detail: EnvK8sHost + " is not set", Hint: "OKE workload identity works only in a pod of an enhanced OKE cluster"}
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		o.workloadURL = "https://" + host + ":12250/resourcePrincipalSessionTokens"
	}
	region := o.getenv(EnvRPRegion)
	if region == "" {
		return nil, &signer.Error{Kind: signer.ErrConfig, Profile: "oke_workload_identity", Detail: EnvRPRegion + " is not set",
			Hint: "set it to the cluster's region, e.g. us-ashburn-1"}
	}
	id, err := checkRegion(region, "oke_workload_identity", "", EnvRPRegion)
	if err != nil {
		return nil, err
	}
	return &workload{opts: &o, region: id}, nil
}

type workload struct {
	opts   *options
	region string
}

func (w *workload) fetch(ctx context.Context, _ bool) (*entry[*signer.Credentials], error) {
	c, err := w.exchange(ctx)
	if err != nil {
		return nil, err
	}
	return principalEntry(c, w.opts), nil
}

func (w *workload) exchange(ctx context.Context) (*signer.Credentials, error) {
	fail := func(detail string, err error) error {
		return &signer.Error{Kind: signer.ErrAuthService, Profile: "oke_workload_identity", Detail: detail, Err: err}
	}
	saToken, err := os.ReadFile(w.opts.saTokenPath)
	if err != nil {
		return nil, fail("cannot read the service account token "+w.opts.saTokenPath, err)
	}
	caPEM, err := os.ReadFile(w.opts.saCAPath)
	if err != nil {
		return nil, fail("cannot read the cluster CA "+w.opts.saCAPath, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fail("no certificate in the cluster CA "+w.opts.saCAPath, nil)
	}
	sessionKey, pubPEM, err := newSessionKey()
	if err != nil {
		return nil, err
	}
	payload, _ := json.Marshal(map[string]string{"podKey": string(pubPEM)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.workloadURL, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(saToken)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("opc-request-id", requestID())
	// The proxymux presents the cluster's certificate: trust only its CA.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	var encoded string // a JSON string holding base64 of {"token": "ST$<jwt>"}
	if err := do(client, req, &encoded, strings.TrimSpace(string(saToken))); err != nil {
		detail := "the OKE proxymux refused the service account token"
		if ae, ok := err.(*authError); ok && ae.status == http.StatusForbidden {
			detail += " (403: is the cluster an enhanced cluster?)"
		}
		return nil, fail(detail, err)
	}
	decoded, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fail("unreadable answer from the OKE proxymux", err)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(decoded, &body); err != nil {
		return nil, fail("unreadable answer from the OKE proxymux", err)
	}
	tok, err := bindToken(strings.TrimPrefix(body.Token, "ST$"), sessionKey, "the OKE proxymux")
	if err != nil {
		return nil, fail("token exchange failed", err)
	}
	return &signer.Credentials{KeyID: "ST$" + tok.Raw, Key: sessionKey, Kind: signer.KindWorkload, Profile: "oke_workload_identity",
		Region: w.region, Tenancy: resourceTenancy(tok), Token: tok}, nil
}

// resourceTenancy is the tenancy of a resource principal's or an OKE
// workload's token as oci-go-sdk reads it: the res_tenant claim
// (common/auth/resource_principal_key_provider.go, TenancyOCIDClaimKey =
// "res_tenant"; the .NET SDK does the same), else tenant.
func resourceTenancy(tok *signer.Token) string {
	if tok.ResourceTenant != "" {
		return tok.ResourceTenant
	}
	return tok.Tenant
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%X", b[:])
}

// ResourcePrincipal returns the resource principal (v2.2) the environment
// describes: OCI_RESOURCE_PRINCIPAL_RPST, _PRIVATE_PEM and
// _PRIVATE_PEM_PASSPHRASE each hold a value or an absolute path to a file
// holding it; files are read again when they change.
func ResourcePrincipal(opts ...Option) (*Source, error) {
	o := newOptions(opts)
	f, err := newResourceFetcher(&o)
	if err != nil {
		return nil, err
	}
	return newSource(string(signer.KindResource), f, &o, false), nil
}

// resourceFetcher reads the resource principal's values, from the
// environment or the files it names.
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
	if v := o.getenv(EnvRPVersion); v != "2.2" {
		return nil, fail(fmt.Sprintf("%s is %q; ocisigner reads resource principal version 2.2", EnvRPVersion, v), "")
	}
	f := &resourceFetcher{o: o, rpst: o.getenv(EnvRPST), pem: o.getenv(EnvRPPrivatePEM), pass: o.getenv(EnvRPPassphrase), region: o.getenv(EnvRPRegion)}
	if f.rpst == "" || f.pem == "" {
		return nil, fail(EnvRPST+" and "+EnvRPPrivatePEM+" must be set", "each holds a value or an absolute path")
	}
	if f.region == "" {
		return nil, fail(EnvRPRegion+" is not set", "")
	}
	id, err := checkRegion(f.region, "resource_principal", "", EnvRPRegion)
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
