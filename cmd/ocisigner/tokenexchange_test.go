package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/signertest"
)

// --principal token-exchange from the environment, as the Kubernetes and
// GitHub Actions examples configure it: every setting from its OCISIGNER_*
// variable (the secret as a value), probe and token work, and neither
// prints the client secret or the subject token.
func TestProbeAndTokenWithTokenExchange(t *testing.T) {
	is := signertest.NewIssuer(t)
	oci := signertest.NewServer(t)
	oci.TrustIssuer(is)
	x := signertest.NewTokenExchange(t, is)
	idp := signertest.NewIdP(t, "https://token.actions.githubusercontent.com")
	x.TrustIdP(idp, signertest.DefaultIdPAudience)
	subjectFile := filepath.Join(t.TempDir(), "oidc-token")
	subject := idp.WriteToken(t, subjectFile, signertest.SubjectTokenOptions{IssuedAt: time.Now().Add(-time.Minute)})
	env := map[string]string{
		"OCI_CLI_CONFIG_FILE":          filepath.Join(t.TempDir(), "none"),
		"OCISIGNER_PRINCIPAL":          "token-exchange",
		"OCISIGNER_TOKEN_EXCHANGE_URL": x.URL,
		"OCISIGNER_CLIENT_ID":          signertest.DefaultExchangeClientID,
		"OCISIGNER_CLIENT_SECRET":      signertest.DefaultExchangeClientSecret,
		"OCISIGNER_SUBJECT_TOKEN_FILE": subjectFile,
		"OCISIGNER_REGION":             "iad",
	}
	code, out, errOut := runCmd(t, env, "probe", "--endpoint", oci.URL)
	if code != exitOK || !strings.Contains(out, "principal:      token_exchange") || !strings.Contains(out, "region:         us-ashburn-1") ||
		!strings.Contains(out, "namespace:      axaxnpcrorw5") || !strings.Contains(out, "token expires:") ||
		!strings.Contains(out, "subject iss:    https://token.actions.githubusercontent.com") || !strings.Contains(out, "subject sub:") {
		t.Fatalf("probe: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, env, "token")
	if code != exitOK || !strings.Contains(out, "principal:    token_exchange") || !strings.Contains(out, "expires:") ||
		!strings.Contains(out, "subject iss:  https://token.actions.githubusercontent.com") || !strings.Contains(out, "subject sub:") {
		t.Fatalf("token: exit %d\n%s%s", code, out, errOut)
	}
	for _, s := range []string{signertest.DefaultExchangeClientSecret, subject} {
		if strings.Contains(out+errOut, s) {
			t.Fatal("token printed the client secret or the subject token")
		}
	}
	// A setting left out is named by its flag.
	delete(env, "OCISIGNER_REGION")
	code, out, errOut = runCmd(t, env, "token")
	if code != exitConfig || !strings.Contains(errOut, "--region") {
		t.Fatalf("without a region: exit %d\n%s%s", code, out, errOut)
	}
	// And the flags are flags, too.
	env["OCISIGNER_REGION"] = "iad"
	delete(env, "OCISIGNER_SUBJECT_TOKEN_FILE")
	if code, out, errOut := runCmd(t, env, "probe", "--endpoint", oci.URL, "--subject-token-file", subjectFile); code != exitOK {
		t.Fatalf("probe with --subject-token-file: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.Remove(subjectFile); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, env, "probe", "--endpoint", oci.URL, "--subject-token-file", subjectFile)
	if code == exitOK || !strings.Contains(out, subjectFile) || !strings.Contains(out, "written by the platform") {
		t.Fatalf("probe without the subject token file: exit %d\n%s", code, out)
	}
}
