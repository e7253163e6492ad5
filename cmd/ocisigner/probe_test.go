package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/signertest"
)

// fixture is an ~/.oci folder and an OCI stand-in that knows its keys.
type fixture struct {
	folder *signertest.Folder
	oci    *signertest.Server
	issuer *signertest.Issuer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{folder: signertest.NewFolder(t), oci: signertest.NewServer(t), issuer: signertest.NewIssuer(t)}
	fx.oci.TrustIssuer(fx.issuer)
	apiKey := signertest.Key(t, 1)
	fx.folder.APIKeyProfile("API", apiKey, "keys/api.pem", signertest.PKCS8, "")
	fx.oci.RegisterAPIKey(signertest.APIKeyID("API", &apiKey.PublicKey), &apiKey.PublicKey)
	unknown := signertest.Key(t, 5)
	fx.folder.APIKeyProfile("UNREGISTERED", unknown, "keys/unknown.pem", signertest.PKCS1, "")
	sk := signertest.Key(t, 2)
	fx.folder.SessionProfile("SESSION", sk, fx.issuer.Mint(t, &sk.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..me"}))
	fx.folder.SessionProfile("EXPIRED", sk, fx.issuer.Mint(t, &sk.PublicKey, signertest.TokenOptions{IssuedAt: time.Now().Add(-3 * time.Hour)}))
	return fx
}

// run runs the binary's command line in-process with only the environment given.
func runCmd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, mapEnv(env))
	return code, out.String(), errb.String()
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestProbe(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	for _, tc := range []struct {
		name     string
		args     []string
		exit     int
		contains []string
	}{
		{"API key accepted", []string{"--profile", "API"}, exitOK,
			[]string{"result:         OK", "principal:      api_key", "namespace:      axaxnpcrorw5", "opc-request-id:", "http status:    200", "latency:"}},
		{"session accepted, token timing shown", []string{"--profile", "SESSION"}, exitOK,
			[]string{"principal:      security_token", "token created:", "token expires:", "remaining:", "session ends:"}},
		{"key unknown to OCI is a credential failure", []string{"--profile", "UNREGISTERED"}, exitCredentials,
			[]string{"result:         FAILED", "http status:    401", "error code:     NotAuthenticated"}},
		{"expired session fails before sending", []string{"--profile", "EXPIRED"}, exitCredentials,
			[]string{"expired at", "oci session refresh --profile EXPIRED"}},
		{"unknown profile is a configuration failure", []string{"--profile", "NOPE"}, exitConfig,
			[]string{"no profile [NOPE]"}},
		{"unreachable endpoint is a network failure", []string{"--profile", "API", "--endpoint", "http://" + closedPort(t)}, exitNetwork,
			[]string{"cannot reach"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"probe"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--endpoint") {
				args = append(args, "--endpoint", fx.oci.URL)
			}
			code, out, errOut := runCmd(t, env, args...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestProbeJSON(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "SESSION"}
	code, out, _ := runCmd(t, env, "probe", "--json", "--endpoint", fx.oci.URL, "--region", "phx")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var r probeResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Profile != "SESSION" || r.Region != "us-phoenix-1" || r.Namespace != "axaxnpcrorw5" || r.Status != 200 || r.Token == nil || r.RequestID == "" {
		t.Fatalf("%+v", r)
	}
	if strings.Contains(out, "eyJ") {
		t.Fatal("probe output carries a token")
	}
	// What reached the stand-in was a signed GET /n/ for that session.
	var found bool
	for _, rec := range fx.oci.Requests() {
		if rec.Method == "GET" && rec.RequestURI == "/n/" && rec.OK && rec.KeyIDKind == signertest.KeyIDSession {
			found = true
		}
	}
	if !found {
		t.Fatal("stand-in did not see the signed probe")
	}
}

// Without --endpoint the probe targets the region's Object Storage in its realm.
func TestProbeEndpointFromRegion(t *testing.T) {
	for region, want := range map[string]string{
		"us-phoenix-1":    "https://objectstorage.us-phoenix-1.oraclecloud.com",
		"iad":             "https://objectstorage.us-ashburn-1.oraclecloud.com",
		"us-langley-1":    "https://objectstorage.us-langley-1.oraclegovcloud.com",
		"uk-gov-london-1": "https://objectstorage.uk-gov-london-1.oraclegovcloud.uk",
		"eu-frankfurt-2":  "https://objectstorage.eu-frankfurt-2.oraclecloud.eu",
	} {
		// Nothing may leave this machine: a transport that refuses every
		// request still shows which endpoint was addressed.
		r := probe(context.Background(), probeParams{profile: "P", src: staticCreds(t), region: region,
			client: refusingClient(), now: time.Now})
		if r.Endpoint != want || r.exit != exitNetwork {
			t.Errorf("%s: endpoint %s exit %d, want %s", region, r.Endpoint, r.exit, want)
		}
	}
}

// probe and token report principals other than the config's profiles.
func TestProbeAndTokenReportPrincipals(t *testing.T) {
	is := signertest.NewIssuer(t)
	oci := signertest.NewServer(t)
	oci.TrustIssuer(is)
	md := signertest.NewMetadataService(t)
	auth := signertest.NewAuthService(t, is)
	auth.TrustRoot(md.Root())
	key := signertest.Key(t, 2)
	rpst := is.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource"})
	env := map[string]string{
		"OCI_CLI_CONFIG_FILE":                t.TempDir() + "/none", // no config: the principal alone
		"OCI_RESOURCE_PRINCIPAL_VERSION":     "2.2",
		"OCI_RESOURCE_PRINCIPAL_RPST":        rpst,
		"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": string(signertest.EncodeKey(t, key, signertest.PKCS1, "")),
		"OCI_RESOURCE_PRINCIPAL_REGION":      "iad",
	}
	for _, tc := range []struct {
		principal string
		args      []string
		contains  []string
	}{
		{"instance", []string{"--metadata-url", md.BaseURL(), "--auth-url", auth.URL},
			[]string{"principal:      instance_principal", "region:         us-phoenix-1", "last refresh:", "token expires:"}},
		{"resource", nil, []string{"principal:      resource_principal", "region:         us-ashburn-1", "token expires:"}},
	} {
		t.Run(tc.principal, func(t *testing.T) {
			args := append([]string{"probe", "--principal", tc.principal, "--endpoint", oci.URL}, tc.args...)
			code, out, errOut := runCmd(t, env, args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			for _, s := range append(tc.contains, "namespace:      axaxnpcrorw5") {
				if !strings.Contains(out, s) {
					t.Errorf("probe output lacks %q:\n%s", s, out)
				}
			}
			code, out, _ = runCmd(t, env, append([]string{"token", "--principal", tc.principal}, tc.args...)...)
			if code != exitOK || !strings.Contains(out, "principal:    "+tc.principal) || !strings.Contains(out, "expires:") {
				t.Fatalf("token: exit %d\n%s", code, out)
			}
			if strings.Contains(out, rpst) {
				t.Fatal("token printed the RPST without --reveal")
			}
		})
	}
}

// token and probe show the tenancy of resource-principal and OKE workload
// credentials as the SDKs read it: res_tenant, else tenant.
func TestTokenAndProbeShowTheResourceTenancy(t *testing.T) {
	fx := newFixture(t)
	key := signertest.Key(t, 2)
	for _, tc := range []struct{ name, tenant, resTenant, want string }{
		{"res_tenant only", "", "ocid1.tenancy.oc1..res", "ocid1.tenancy.oc1..res"},
		{"tenant only", "ocid1.tenancy.oc1..ten", "", "ocid1.tenancy.oc1..ten"},
		{"both", "ocid1.tenancy.oc1..ten", "ocid1.tenancy.oc1..res", "ocid1.tenancy.oc1..res"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rpst := fx.issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource", Tenant: tc.tenant, NoTenant: tc.tenant == "", ResTenant: tc.resTenant})
			env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.Path("none"), "OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_RPST": rpst,
				"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": string(signertest.EncodeKey(t, key, signertest.PKCS1, "")), "OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
			for _, args := range [][]string{{"token", "--principal", "resource"}, {"probe", "--principal", "resource", "--endpoint", fx.oci.URL}} {
				code, out, errOut := runCmd(t, env, args...)
				if code != exitOK || !strings.Contains(out, "tenancy:") || !strings.Contains(out, tc.want) {
					t.Errorf("%v: exit %d, want tenancy %s:\n%s%s", args, code, tc.want, out, errOut)
				}
				if tc.want != tc.tenant && tc.tenant != "" && strings.Contains(out, tc.tenant) {
					t.Errorf("%v shows the tenant claim where res_tenant wins:\n%s", args, out)
				}
			}
		})
	}
}
