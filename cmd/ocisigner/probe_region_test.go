package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// `ocisigner probe` with a session profile whose region is not a region
// but names another host (x@127.0.0.1:PORT/ makes
// https://objectstorage.x@127.0.0.1:PORT/.oraclecloud.com/n/ a request to
// 127.0.0.1:PORT) refuses as a configuration error, and neither the probe
// (keyId ST$<session token>) nor a session refresh (the token in its
// keyId and body; the token here is due for one) reaches that host: not
// one connection. The same region given by --region or OCI_CLI_REGION is
// a usage error, and through a gateway (--via) nothing is sent to the
// gateway either.
func TestProbeRefusesAHostileProfileRegion(t *testing.T) {
	fx := newFixture(t)
	trap := signertest.NewTrap(t)
	gateway := signertest.NewTrap(t) // stands for a gateway at --via
	key := signertest.Key(t, 2)
	// Four minutes left: inside the refresh margin from the start.
	tok := fx.issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: time.Now().Add(4*time.Minute - time.Hour)})
	hostile := map[string]string{
		"HOSTILE_PATH":     "x@" + trap.Addr + "/",
		"HOSTILE_FRAGMENT": "x@" + trap.Addr + "#",
		"HOSTILE_QUERY":    "x@" + trap.Addr + "?",
	}
	for name, region := range hostile {
		fx.folder.Write("sessions/"+name+"/oci_api_key.pem", signertest.EncodeKey(t, key, signertest.PKCS1, ""))
		fx.folder.Write("sessions/"+name+"/token", []byte(tok+"\n"))
		fx.folder.AppendConfig(name, "fingerprint", signer.Fingerprint(&key.PublicKey),
			"key_file", fx.folder.WrittenPath("sessions/"+name+"/oci_api_key.pem"), "tenancy", "ocid1.tenancy.oc1..test",
			"region", region, "security_token_file", fx.folder.WrittenPath("sessions/"+name+"/token"))
	}
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	withEnv := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		exit   int
		wants  []string
		asJSON bool
	}{
		{"profile region ending in a path", env, []string{"--profile", "HOSTILE_PATH"}, exitConfig,
			[]string{"profile HOSTILE_PATH", "region in the profile is not a region", "invalid region"}, false},
		{"profile region ending in a fragment", env, []string{"--profile", "HOSTILE_FRAGMENT"}, exitConfig,
			[]string{"profile HOSTILE_FRAGMENT", "region in the profile is not a region", "invalid region"}, false},
		{"profile region ending in a query", env, []string{"--profile", "HOSTILE_QUERY"}, exitConfig,
			[]string{"profile HOSTILE_QUERY", "region in the profile is not a region", "invalid region"}, false},
		{"profile named by OCI_CLI_PROFILE", withEnv("OCI_CLI_PROFILE", "HOSTILE_PATH"), nil, exitConfig,
			[]string{"profile HOSTILE_PATH", "invalid region"}, false},
		{"--json", env, []string{"--profile", "HOSTILE_PATH", "--json"}, exitConfig, nil, true},
		// Through a gateway the probe needs only the profile's region: a
		// hostile one is refused as such, and nothing is sent.
		{"--via a gateway", env, []string{"--profile", "HOSTILE_PATH", "--via", "http://" + gateway.Addr}, exitConfig,
			[]string{"profile HOSTILE_PATH", "invalid region"}, false},
		// The profile's region is hostile too: were the setting ignored, the
		// probe would still go to the trap, never to a real OCI endpoint.
		{"--region", env, []string{"--profile", "HOSTILE_PATH", "--region", "x@" + trap.Addr + "/"}, exitUsage,
			[]string{"-region", "invalid region"}, false},
		{"OCI_CLI_REGION", withEnv("OCI_CLI_REGION", "x@"+trap.Addr+"/"), []string{"--profile", "HOSTILE_PATH"}, exitUsage,
			[]string{"OCI_CLI_REGION", "invalid region"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeGateway := trap.Hits(), gateway.Hits()
			code, out, errOut := runCmd(t, tc.env, append([]string{"probe", "--timeout", "5s"}, tc.args...)...)
			if n := trap.Hits() - before; n != 0 {
				t.Errorf("%d connections reached the host the region names", n)
			}
			if n := gateway.Hits() - beforeGateway; n != 0 {
				t.Errorf("%d connections reached the gateway", n)
			}
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("lacks %q:\n%s%s", w, out, errOut)
				}
			}
			if strings.Contains(out+errOut, "result:         OK") || strings.Contains(out+errOut, "eyJ") {
				t.Errorf("the probe ran, or its output carries a token:\n%s%s", out, errOut)
			}
			if tc.asJSON {
				var r probeResult
				if err := json.Unmarshal([]byte(out), &r); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				if r.OK || r.Endpoint != "" || !strings.Contains(r.Error, "invalid region") {
					t.Errorf("result %+v: want a refusal naming the region, and no endpoint", r)
				}
			}
		})
	}
	// Counted over the whole test as well: a connection that landed after
	// its subtest's check (a refresh still under way) is not missed.
	if n := trap.Hits() + gateway.Hits(); n != 0 {
		t.Fatalf("%d connections in all reached the trap or the gateway", n)
	}
}
