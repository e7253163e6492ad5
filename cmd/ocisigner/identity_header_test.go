package main

import (
	"io"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
)

// serve --envoy-identity-header x-forwarded-client-cert, the setting of an
// Envoy that writes XFCC itself (forward_client_cert_details SANITIZE_SET):
// from the flag to the signer, a request carrying XFCC is signed for the
// caller Envoy verified instead of refused as forged (without the flag it
// is refused: TestHostileIdentitiesAreRefusedBeforeSigning, "a forwarded
// client certificate"). The signer still never reads a caller from XFCC: a
// certificate no rule names stays refused, and the refused line names that
// certificate, not the one XFCC claims. Any other identity header is still
// refused.
func TestServeEnvoyIdentityHeaderIsLetThroughNeverRead(t *testing.T) {
	pol, keys := writePolicy(t, testPolicy)
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
	parsed, exit, ok := parseServe([]string{"--policy", pol, "--keys", keys, "--envoy-identity-header", "x-forwarded-client-cert"}, mapEnv(env), io.Discard, io.Discard)
	if !ok {
		t.Fatalf("serve's flags: exit %d", exit)
	}
	h := newHostile(t, serveOptions{policy: parsed.policy}, 1)
	const builder = "spiffe://cluster.local/ns/team-a/sa/builder"
	const stranger = "spiffe://cluster.local/ns/team-x/sa/intruder"
	xfcc := header{"x-forwarded-client-cert", "By=spiffe://cluster.local/ns/gw/sa/envoy;URI=" + builder}
	send := func(peer, path string, extra ...header) []*extprocv3.ProcessingResponse {
		t.Helper()
		resps, err := h.exchange(withCaller(headersMsg(request("GET", realmHost, path, extra...), true), map[string]any{extproc.AttrPeerURISAN: peer}, nil))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return resps
	}

	if resps := send(builder, "/n/with-xfcc", xfcc); !signedAnything(resps) {
		r, _ := immediate(t, resps)
		t.Fatalf("the builder's request with the XFCC Envoy set was not signed: %+v", r)
	}
	if l := logLineFor(t, h, "signed", "/n/with-xfcc"); !strings.HasSuffix(l, " caller="+builder+" rule=builders") {
		t.Errorf("the signed line does not name the verified caller:\n%s", l)
	}

	resps := send(stranger, "/n/xfcc-names-another", xfcc)
	r, ok := immediate(t, resps)
	if !ok || r.status != 403 || r.code != policy.CodeNoRule || !strings.Contains(r.reason, stranger) || signedAnything(resps) {
		t.Fatalf("a certificate no rule names, with XFCC naming the builder: %+v, want 403 %s for itself", r, policy.CodeNoRule)
	}
	if l := logLineFor(t, h, "refused", "/n/xfcc-names-another"); !strings.HasSuffix(l, " caller="+stranger+" rule="+policy.LabelNoRule) {
		t.Errorf("the refused line does not name the verified caller:\n%s", l)
	}

	resps = send(builder, "/n/xfcc-and-caller", xfcc, header{"x-oci-caller", builder})
	r, ok = immediate(t, resps)
	if !ok || r.status != 401 || r.code != policy.CodeInvalidCaller || !strings.Contains(r.reason, "x-oci-caller") || signedAnything(resps) {
		t.Fatalf("x-oci-caller beside the allowed XFCC: %+v, want 401 %s", r, policy.CodeInvalidCaller)
	}
	if l := logLineFor(t, h, "refused", "/n/xfcc-and-caller"); !strings.HasSuffix(l, " caller=(invalid) rule="+policy.LabelUnauthenticated) {
		t.Errorf("the refused line of a forged identity:\n%s", l)
	}
}

// logLineFor is the one log line with msg for path.
func logLineFor(t *testing.T, h *hostile, msg, path string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, " msg="+msg+" ") && strings.Contains(l, " path="+path+" ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s lines for %s, want 1:\n%s", len(found), msg, path, grepLines(h.logs.String(), "time="))
	}
	return found[0]
}
