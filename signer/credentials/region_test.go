package credentials_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// hostileRegions are regions that would name another host if a URL were
// built from them as written.
func hostileRegions(tr *signertest.Trap) []string {
	return []string{"x@" + tr.Addr + "/", tr.Addr, "us-ashburn-1." + tr.Addr, "us-ashburn-1/@" + tr.Addr, "us-ashburn-1#"}
}

// A region is validated where it enters, and a profile, a principal or a
// setting with one that is not a region identifier does not work at all:
// no refresh, federation or exchange is sent anywhere.
func TestHostileRegionIsRefusedWhereItEnters(t *testing.T) {
	tr := signertest.NewTrap(t)
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	for _, region := range hostileRegions(tr) {
		t.Run(region, func(t *testing.T) {
			check := func(where string, err error) {
				t.Helper()
				if !errors.Is(err, signer.ErrConfig) || !errors.Is(err, signer.ErrInvalidRegion) {
					t.Errorf("%s: err = %v, want a configuration error about the region", where, err)
				}
			}
			// A profile's region: a session profile whose refresh is due,
			// and an API-key profile.
			f := signertest.NewFolder(t)
			f.Write("sessions/S/oci_api_key.pem", signertest.EncodeKey(t, key, signertest.PKCS1, ""))
			f.Write("sessions/S/token", []byte(nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute)))
			f.AppendConfig("S", "fingerprint", signer.Fingerprint(&key.PublicKey), "key_file", f.WrittenPath("sessions/S/oci_api_key.pem"),
				"tenancy", "ocid1.tenancy.oc1..test", "region", region, "security_token_file", f.WrittenPath("sessions/S/token"))
			f.Write("api.pem", signertest.EncodeKey(t, key, signertest.PKCS1, ""))
			f.AppendConfig("A", "user", "ocid1.user.oc1..a", "fingerprint", signer.Fingerprint(&key.PublicKey), "key_file", f.WrittenPath("api.pem"),
				"tenancy", "ocid1.tenancy.oc1..test", "region", region)
			f.AppendConfig("TX", "authentication_type", "token_exchange", "domain_url", "https://idcs-x.identity.oraclecloud.com",
				"client_id", "c", "client_secret_file", "secret", "subject_token_file", "subject", "region", region)
			cfg, err := openTest(t, f.ConfigPath(), tm.opts()...)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"S", "A", "TX"} {
				_, err := cfg.Source(p).Credentials(context.Background())
				check("profile "+p, err)
			}
			// The environment of resource principals and OKE workload identity.
			env := map[string]string{"OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_RPST": "x",
				"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": "y", "OCI_RESOURCE_PRINCIPAL_REGION": region, "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
			getenv := credentials.WithGetenv(func(k string) string { return env[k] })
			_, err = credentials.ResourcePrincipal(getenv)
			check("resource principal", err)
			_, err = credentials.WorkloadIdentity(getenv)
			check("workload identity", err)
			// A setting (--region of the token-exchange principal).
			_, err = credentials.TokenExchangePrincipal(credentials.WithTokenExchange(credentials.TokenExchange{
				DomainURL: "https://idcs-x.identity.oraclecloud.com", ClientID: "c", ClientSecret: "s", SubjectToken: "t", Region: region}))
			check("token exchange setting", err)
			// Instance metadata: what IMDS answers is not trusted either.
			md := signertest.NewMetadataService(t)
			md.SetRegion(region)
			src := credentials.InstancePrincipal(tm.opts(credentials.WithMetadataBaseURL(md.BaseURL()))...)
			defer src.Close()
			_, err = src.Credentials(context.Background())
			if !errors.Is(err, signer.ErrInvalidRegion) {
				t.Errorf("instance principal: err = %v, want the region refused", err)
			}
		})
	}
	if n := tr.Hits(); n != 0 {
		t.Fatalf("%d connections reached the host a hostile region names", n)
	}
}

// A refresh answer is installed only if it continues the same session:
// same key, issuer, subject, tenant, principal type and session end.
// Anything else is refused and the current token stays in use.
func TestRefreshedTokenMustBeTheSessionsSuccessor(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	for _, tc := range []struct {
		name   string
		change func(claims jwt.MapClaims)
	}{
		{"another issuer", func(c jwt.MapClaims) { c["iss"] = "evil.example" }},
		{"another subject", func(c jwt.MapClaims) { c["sub"] = "ocid1.user.oc1..someoneelse" }},
		{"another tenant", func(c jwt.MapClaims) { c["tenant"] = "ocid1.tenancy.oc1..other" }},
		{"a new session", func(c jwt.MapClaims) { c["sess_exp"] = "Mon, 01 Jan 2035 00:00:00 UTC" }},
		{"no jwk", func(c jwt.MapClaims) { delete(c, "jwk") }},
		{"another key", func(c jwt.MapClaims) { other := signertest.Key(t, 3); c["jwk"] = signer.JWK(&other.PublicKey, "x") }},
		{"already expired", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := newTimed()
			old := nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute)
			// An auth service that answers with the current token's claims,
			// new times, and one change.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				claims := jwt.MapClaims{}
				if _, _, err := jwt.NewParser().ParseUnverified(old, claims); err != nil {
					t.Error(err)
				}
				claims["iat"], claims["exp"] = tm.clock.Now().Unix(), tm.clock.Now().Add(time.Hour).Unix()
				tc.change(claims)
				tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(signertest.Key(t, 4))
				if err != nil {
					t.Error(err)
				}
				_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
			}))
			defer srv.Close()
			f := signertest.NewFolder(t)
			sess := f.SessionProfile("S", key, old)
			cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(srv.URL), credentials.WithWriteBack(true))...)
			if err != nil {
				t.Fatal(err)
			}
			ev := tm.rec.WaitRefresh(t, "S", 1)
			if ev.Err == nil || !errors.Is(ev.Err, signer.ErrAuthService) || !strings.Contains(ev.Err.Error(), "successor") {
				t.Fatalf("refresh event %+v: want the answer refused", ev)
			}
			if c, err := cfg.Source("S").Credentials(context.Background()); err != nil || c.Token.Raw != old {
				t.Fatalf("the current token must stay in use: %v", err)
			}
			if got := strings.TrimSpace(readString(t, f.Path(sess.TokenPath))); got != old {
				t.Fatal("a refused token was written back to the token file")
			}
		})
	}
}
