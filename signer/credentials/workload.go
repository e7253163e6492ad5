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
	envRPVersion    = "OCI_RESOURCE_PRINCIPAL_VERSION"
	envRPST         = "OCI_RESOURCE_PRINCIPAL_RPST"
	envRPPrivatePEM = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"
	envRPPassphrase = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"
	envRPRegion     = "OCI_RESOURCE_PRINCIPAL_REGION"
	envK8sHost      = "KUBERNETES_SERVICE_HOST"
	envSACertPath   = "OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH"
)

// newWorkloadFetcher gets the credentials of an OKE workload: the pod's
// service-account token is exchanged at the cluster's proxymux
// (https://$KUBERNETES_SERVICE_HOST:12250/resourcePrincipalSessionTokens)
// for a resource-principal session token bound to a fresh in-memory session
// key. The service-account token is read again at each renewal, since
// Kubernetes rotates projected tokens.
func newWorkloadFetcher(po *options) (*workload, error) {
	o := *po // the endpoint and paths are this principal's own
	if p := o.getenv(envSACertPath); p != "" && o.saCAPath == defaultSACAPath {
		o.saCAPath = p
	}
	if o.workloadURL == "" {
		host := o.getenv(envK8sHost)
		if host == "" {
			return nil, &signer.Error{Kind: signer.ErrConfig, Profile: "oke_workload_identity",
				Detail: envK8sHost + " is not set", Hint: "OKE workload identity works only in a pod of an enhanced OKE cluster"}
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		o.workloadURL = "https://" + host + ":12250/resourcePrincipalSessionTokens"
	}
	region := o.getenv(envRPRegion)
	if region == "" {
		return nil, &signer.Error{Kind: signer.ErrConfig, Profile: "oke_workload_identity", Detail: envRPRegion + " is not set",
			Hint: "set it to the cluster's region, e.g. us-ashburn-1"}
	}
	id, err := checkRegion(region, "oke_workload_identity", "", envRPRegion)
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
