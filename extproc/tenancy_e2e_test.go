package extproc_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The tenancy of a resource principal's and an OKE workload's token is
// res_tenant, as the SDKs read it, else tenant; it is the compartment a
// Generative AI request that names none is sent with, and with neither
// claim the request is refused rather than sent with an empty
// opc-compartment-id.
func TestResourceTenancyIsTheDefaultCompartment(t *testing.T) {
	t.Parallel()
	const ten, res = "ocid1.tenancy.oc1..fromtenant", "ocid1.tenancy.oc1..fromrestenant"
	for _, principal := range []string{"resource", "workload"} {
		for _, tc := range []struct{ name, tenant, resTenant, want string }{
			{"res_tenant only", "", res, res},
			{"tenant only", ten, "", ten},
			{"both", ten, res, res},
			{"neither", "", "", ""},
		} {
			t.Run(principal+"/"+tc.name, func(t *testing.T) {
				var src signer.Source
				s := newStack(t, stackOptions{server: func(c *extproc.Config) {
					c.Credentials = overrideCredentials{base: c.Credentials, profile: "API", src: lazy(&src)}
				}})
				src = principalSource(t, s, principal, tc.tenant, tc.resTenant)
				genai := signertest.NewGenAI(s.oci)
				req := s.request("POST", gateway, "/genai/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Content-Type", "application/json")
				a := s.do(req)
				if tc.want == "" {
					code, msg := a.refusal(t)
					if a.status != http.StatusBadRequest || code != extproc.CodeNoCompartment || !strings.Contains(msg, "opc-compartment-id") {
						t.Fatalf("%d %s %q, want 400 %s", a.status, code, msg, extproc.CodeNoCompartment)
					}
					if len(s.oci.Requests()) != 0 {
						t.Fatal("a request without a compartment reached OCI")
					}
					return
				}
				if a.status != 200 {
					t.Fatalf("status %d: %s", a.status, a.body)
				}
				if c := genai.Calls()[0]; c.Compartment != tc.want {
					t.Fatalf("compartment %q, want %q", c.Compartment, tc.want)
				}
			})
		}
	}
}

// lazy is a source set after the stack is made (the principals need the
// stack's issuer).
type lazySource struct{ p *signer.Source }

func lazy(p *signer.Source) signer.Source { return lazySource{p} }

func (l lazySource) Credentials(ctx context.Context) (*signer.Credentials, error) {
	return (*l.p).Credentials(ctx)
}

// principalSource is a resource principal or an OKE workload identity in
// us-ashburn-1 whose tokens carry the given tenancy claims ("" leaves one out).
func principalSource(t *testing.T, s *stack, principal, tenant, resTenant string) signer.Source {
	t.Helper()
	key := signertest.Key(t, 2)
	switch principal {
	case "resource":
		rpst := s.issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource", Tenant: tenant, NoTenant: tenant == "", ResTenant: resTenant})
		env := map[string]string{"OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_RPST": rpst,
			"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": string(signertest.EncodeKey(t, key, signertest.PKCS1, "")), "OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
		return principalStore(t, credentials.PrincipalResource, credentials.WithGetenv(func(k string) string { return env[k] }))
	default:
		pm := signertest.NewProxymux(t, s.issuer)
		pm.SetTenancyClaims(tenant, resTenant)
		dir := t.TempDir()
		sa, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(ca, pm.CAPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sa, []byte(pm.ServiceAccountToken()), 0o600); err != nil {
			t.Fatal(err)
		}
		return principalStore(t, credentials.PrincipalWorkload, credentialstest.WorkloadIdentity(pm.URL(), sa, ca),
			credentials.WithGetenv(func(k string) string { return map[string]string{"OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}[k] }))
	}
}

// principalStore is a principal alone, opened as serve --principal opens it.
func principalStore(t *testing.T, principal string, opts ...credentials.Option) signer.Source {
	t.Helper()
	st, err := credentials.Open(credentials.Settings{Principal: principal, DefaultProfile: "DEFAULT"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.Source("DEFAULT")
}
