package extproc_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The Envoy-side end-to-end table: a client sends to Envoy running the
// shipped envoy.yaml, ocisigner signs over ext_proc, the OCI stand-in
// verifies. Each case asserts only what the client and OCI see (status,
// ocisigner's or Envoy's answer, what OCI received and whether its
// signature verified), never the stand-in's internals, so the same cases
// run against a real Envoy: with OCISIGNER_ENVOY=/path/to/envoy set, each
// stack starts that binary instead of the stand-in (envoy_process_test.go).

// signerMaxBody is the table's --max-body-bytes: above Envoy's 1 MiB
// default buffer (so a body past that is shown to be buffered under the
// route's limit), far below the route's 32 MiB.
const signerMaxBody = 3 << 20

// e2eFixture is the stack a case runs on: where envoy.yaml's example
// route's pin (profile EXAMPLE, for requests with x-oci-route: example)
// has its region.
type e2eFixture int

const (
	pinInDefaultRegion e2eFixture = iota // us-ashburn-1, the default profile's
	pinInOtherRegion                     // eu-frankfurt-2, another realm
)

// payload is a request body: data, or size bytes of a pattern.
type payload struct {
	data    []byte
	size    int64
	chunked bool // sent without a length (Transfer-Encoding: chunked)
}

func bodyOf(s string) *payload { return &payload{data: []byte(s)} }

func (p *payload) length() int64 {
	if p.data != nil {
		return int64(len(p.data))
	}
	return p.size
}

func (p *payload) reader() io.Reader {
	if p.data != nil {
		return bytes.NewReader(p.data)
	}
	return io.LimitReader(&blockReader{}, p.size)
}

func (p *payload) sha256() string {
	h := sha256.New()
	_, _ = io.Copy(h, p.reader())
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// atOCI is what OCI must receive, signed and verified.
type atOCI struct {
	host, target string
	profile      string // whose credentials signed it
	bodySigned   bool   // x-content-sha256 signed: the body was buffered and hashed
}

type e2eCase struct {
	name                 string
	fixture              e2eFixture
	method, host, target string
	header               map[string]string
	body                 *payload

	status  int
	refusal string   // ocisigner's refusal code; "" when it did not refuse
	says    []string // in the refusal's message
	answer  string   // the body of an answer Envoy made itself
	oci     *atOCI   // nil: nothing reaches OCI
}

// foreign are credentials meant for someone else (a proxy, an API
// gateway, another provider, a browser's cookies) and headers that would
// change what is signed (x-date overrides date): every request of the
// table carries them, and none may reach OCI.
var foreign = map[string]string{
	"Authorization": "Bearer the-client-s-own", "Proxy-Authorization": "Basic dXNlcjpwYXNz",
	"X-Api-Key": "sk-proj-secret1", "Api-Key": "azure-secret2", "X-Goog-Api-Key": "AIzaSecret3",
	"Cookie": "session=localhost-app-secret4", "X-Date": "Mon, 01 Jan 2001 00:00:00 GMT",
}

// kept names no secret and must reach OCI as sent.
var kept = map[string]string{"OpenAI-Organization": "org-123"}

func e2eCases() []e2eCase {
	var cs []e2eCase
	cs = append(cs, everyMethodCases()...)
	cs = append(cs, bodyCases()...)
	cs = append(cs, gatewayCases()...)
	cs = append(cs, routePinCases()...)
	cs = append(cs, refusalCases()...)
	return append(cs, gatewayRefusalCases()...)
}

// Every method with both credential kinds, bodies empty and not.
func everyMethodCases() []e2eCase {
	const target = "/20160918/instances?compartmentId=ocid1.compartment.oc1..x&displayName=a%20b"
	var cs []e2eCase
	for _, profile := range []string{"API", "SESSION"} {
		for _, method := range []string{"GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"} {
			bodies := []*payload{nil}
			if method == "POST" || method == "PUT" || method == "PATCH" {
				bodies = []*payload{bodyOf(""), bodyOf(`{"displayName":"ünïcode"}`)}
			}
			for _, b := range bodies {
				name := fmt.Sprintf("proxy form/%s/%s", profile, method)
				if b != nil {
					name += fmt.Sprintf(", %d-byte body", b.length())
				}
				cs = append(cs, e2eCase{name: name, method: method, host: iaasHost, target: target,
					header: map[string]string{"X-Oci-Profile": profile}, body: b, status: 200,
					oci: &atOCI{host: iaasHost, target: target, profile: profile, bodySigned: b != nil}})
			}
		}
	}
	for _, host := range []string{strings.ToUpper(osHost), "ObjectStorage.US-Ashburn-1.OracleCloud.com"} {
		cs = append(cs, e2eCase{name: "proxy form/Host " + host, method: "GET", host: host, target: "/n/", status: 200,
			oci: &atOCI{host: host, target: "/n/", profile: "API"}})
	}
	return cs
}

// Bodies Envoy buffers (hashed and signed, sent with their length) and an
// upload it streams.
func bodyCases() []e2eCase {
	const target = "/20160918/volumeAttachments"
	signed := &atOCI{host: iaasHost, target: target, profile: "API", bodySigned: true}
	upload := &payload{size: bufferLimit + 1<<20}
	return []e2eCase{
		{name: "body/2 MiB, past Envoy's 1 MiB default buffer", method: "POST", host: iaasHost, target: target,
			body: &payload{size: 2 << 20}, status: 200, oci: signed},
		{name: "body/chunked, no content-length", method: "POST", host: iaasHost, target: target,
			body: &payload{data: []byte("part one,part two"), chunked: true}, status: 200, oci: signed},
		{name: "body/empty, chunked", method: "POST", host: iaasHost, target: target,
			body: &payload{data: []byte{}, chunked: true}, status: 200, oci: signed},
		{name: "body/PutObject streamed past the route's 32 MiB buffer limit", method: "PUT", host: osHost, target: uploadPath + "table.bin",
			header: map[string]string{"Content-Type": "application/octet-stream"}, body: upload, status: 200,
			oci: &atOCI{host: osHost, target: uploadPath + "table.bin", profile: "API"}},
	}
}

// The gateway form: the gateway as Host, the OCI host or an alias first in
// the path, the rest byte for byte.
func gatewayCases() []e2eCase {
	const sessionHost = "objectstorage.us-phoenix-1.oraclecloud.com" // the SESSION profile's region
	return []e2eCase{
		{name: "gateway form/explicit host/GET", method: "GET", host: gateway, target: "/" + osHost + "/n/", status: 200,
			oci: &atOCI{host: osHost, target: "/n/", profile: "API"}},
		{name: "gateway form/explicit host/POST", method: "POST", host: gateway, target: "/" + iaasHost + "/20160918/instances",
			body: bodyOf(`{"shape":"VM"}`), status: 200, oci: &atOCI{host: iaasHost, target: "/20160918/instances", profile: "API", bodySigned: true}},
		{name: "gateway form/alias", method: "GET", host: gateway, target: "/objectstorage/n/", status: 200,
			oci: &atOCI{host: osHost, target: "/n/", profile: "API"}},
		{name: "gateway form/alias, the rest of the path byte for byte", method: "GET", host: gateway, target: "/objectstorage/a%2Fb//c?b=2&a=1&x=%41",
			status: 200, oci: &atOCI{host: osHost, target: "/a%2Fb//c?b=2&a=1&x=%41", profile: "API"}},
		{name: "gateway form/alias in the named profile's region", method: "GET", host: gateway, target: "/objectstorage/n/",
			header: map[string]string{"X-Oci-Profile": "SESSION"}, status: 200, oci: &atOCI{host: sessionHost, target: "/n/", profile: "SESSION"}},
	}
}

// envoy.yaml's example route pins profile EXAMPLE whichever form reached
// it; the header cannot choose another profile there; an alias resolved
// with another region than the pin's is refused, 421, not signed for a
// host of the wrong region.
func routePinCases() []e2eCase {
	pin := map[string]string{"X-Oci-Route": "example"}
	other := map[string]string{"X-Oci-Route": "example", "X-Oci-Profile": "API"}
	var cs []e2eCase
	for _, f := range []struct{ form, host, target string }{
		{"proxy form", osHost, "/n/"},
		{"gateway form, explicit host", gateway, "/" + osHost + "/n/"},
		{"gateway form, alias", gateway, "/objectstorage/n/"},
	} {
		cs = append(cs,
			e2eCase{name: "route pin/" + f.form, method: "GET", host: f.host, target: f.target, header: pin, status: 200,
				oci: &atOCI{host: osHost, target: "/n/", profile: "EXAMPLE"}},
			e2eCase{name: "route pin/" + f.form + ", the header naming another profile", method: "GET", host: f.host, target: f.target, header: other,
				status: 403, refusal: extproc.CodeProfileNotServed, says: []string{"this route signs as its own profile"}})
	}
	return append(cs,
		e2eCase{name: "route pin/alias resolved for another region", fixture: pinInOtherRegion, method: "GET", host: gateway, target: "/objectstorage/n/",
			header: pin, status: 421, refusal: extproc.CodeMisdirected, says: []string{"EXAMPLE", "x-oci-profile"}},
		e2eCase{name: "route pin/alias resolved in the pin's region when the header names it", fixture: pinInOtherRegion, method: "GET", host: gateway,
			target: "/objectstorage/n/", header: map[string]string{"X-Oci-Route": "example", "X-Oci-Profile": "EXAMPLE"}, status: 200,
			oci: &atOCI{host: "objectstorage.eu-frankfurt-2.oraclecloud.eu", target: "/n/", profile: "EXAMPLE"}},
	)
}

// Refusals, by ocisigner (its JSON in OCI's error shape) and by Envoy.
func refusalCases() []e2eCase {
	return []e2eCase{
		{name: "refused/host outside the OCI realms", method: "GET", host: "example.com", target: "/",
			status: 403, refusal: extproc.CodeHostNotAllowed, says: []string{"example.com", "oraclecloud.com"}},
		{name: "refused/look-alike host", method: "GET", host: "oraclecloud.com.evil.example", target: "/",
			status: 403, refusal: extproc.CodeHostNotAllowed},
		{name: "refused/unknown profile", method: "GET", host: iaasHost, target: "/", header: map[string]string{"X-Oci-Profile": "NOPE"},
			status: 400, refusal: extproc.CodeUnknownProfile, says: []string{"NOPE", "ask its operator"}},
		{name: "refused/expired session token", method: "GET", host: iaasHost, target: "/", header: map[string]string{"X-Oci-Profile": "EXPIRED"},
			status: 401, refusal: extproc.CodeCredentialsExpired, says: []string{"EXPIRED", "expired at", "oci session refresh --profile EXPIRED"}},
		{name: "refused/body over --max-body-bytes", method: "POST", host: iaasHost, target: "/", body: &payload{size: signerMaxBody + 1},
			status: 413, refusal: extproc.CodeBodyTooLarge, says: []string{fmt.Sprint(signerMaxBody + 1), "--max-body-bytes"}},
		{name: "refused by Envoy/body over the route's buffer limit", method: "POST", host: iaasHost, target: "/", body: &payload{size: bufferLimit + 1},
			status: 413, answer: "Payload Too Large"},
	}
}

// Gateway addresses that cannot be read one way only are refused with
// 400, and an explicit host outside the OCI realms with the same 403 as a
// proxy-form request for it.
func gatewayRefusalCases() []e2eCase {
	var cs []e2eCase
	for _, tc := range []struct {
		name, target, profile string
		status                int
		code, reason          string
	}{
		{"an explicit host outside the realms", "/example.com/n/", "", 403, extproc.CodeHostNotAllowed, `"example.com" is not one`},
		{"an IP literal", "/127.0.0.1:8080/n/", "", 403, extproc.CodeHostNotAllowed, "send /<OCI host or service alias>/<path>"},
		{"an unknown alias", "/nosuch/n/", "", 403, extproc.CodeHostNotAllowed, "genai"},
		{"an empty segment", "//n/", "", 400, extproc.CodeGatewayPath, "empty"},
		{"a dot-dot segment", "/../n/", "", 400, extproc.CodeGatewayPath, `".."`},
		{"percent-encoding in the host segment", "/objectstorage.us-ashburn-1.oraclecloud.com%2Fn/", "", 400, extproc.CodeGatewayPath, "percent-encoded"},
		{"an encoded dot in the host segment", "/objectstorage%2Eus-ashburn-1.oraclecloud.com/n/", "", 400, extproc.CodeGatewayPath, "percent-encoded"},
		{"userinfo", "/user@objectstorage.us-ashburn-1.oraclecloud.com/n/", "", 400, extproc.CodeGatewayPath, "user information"},
		{"a port on an alias", "/genai:443/openai/v1/models", "", 400, extproc.CodeGatewayPath, "no port"},
		{"a host that is no host name", "/a..b.oraclecloud.com/n/", "", 400, extproc.CodeInvalidHost, "empty label"},
		{"an alias for a profile without region", "/objectstorage/n/", "NOREGION", 400, extproc.CodeGatewayPath, "region"},
		{"nothing at all", "/", "", 403, extproc.CodeHostNotAllowed, "/<OCI host or service alias>/<path>"},
	} {
		c := e2eCase{name: "gateway form refused/" + tc.name, method: "GET", host: gateway, target: tc.target,
			status: tc.status, refusal: tc.code, says: []string{tc.reason}}
		if tc.profile != "" {
			c.header = map[string]string{"X-Oci-Profile": tc.profile}
		}
		cs = append(cs, c)
	}
	return cs
}

func TestEnvoyEndToEnd(t *testing.T) {
	t.Parallel()
	runEndToEndTable(t, envoyUnderTest(t, os.Getenv), e2eCases())
}

// bulk is a case that moves more than Envoy's buffer limit.
func (c e2eCase) bulk() bool { return c.body != nil && c.body.length() > bufferLimit }

// runEndToEndTable runs the cases, one stack per fixture, against the
// Envoy binary bin ("" for the stand-in).
func runEndToEndTable(t *testing.T, bin string, cases []e2eCase) {
	for _, f := range []e2eFixture{pinInDefaultRegion, pinInOtherRegion} {
		s := newE2EStack(t, bin, f)
		for _, c := range cases {
			if c.fixture == f {
				t.Run(c.name, func(t *testing.T) { s.runCase(t, c) })
			}
		}
	}
}

// newE2EStack is a stack with the profiles the table names: API (the
// default, us-ashburn-1), SESSION (us-phoenix-1), EXPIRED, EXAMPLE (the
// example route's pin, in the fixture's region) and NOREGION.
func newE2EStack(t *testing.T, bin string, f e2eFixture) *stack {
	s := newStack(t, stackOptions{maxBody: signerMaxBody, envoyBinary: bin})
	region := "us-ashburn-1"
	if f == pinInOtherRegion {
		region = "eu-frankfurt-2"
	}
	examplePin(t, s, region)
	s.folder.AppendConfig("NOREGION", "user", "ocid1.user.oc1..unoregion", "fingerprint", signer.Fingerprint(&signertest.Key(t, 1).PublicKey),
		"key_file", s.folder.WrittenPath("keys/api.pem"), "tenancy", "ocid1.tenancy.oc1..test")
	return s
}

// examplePin is the profile envoy.yaml's example route pins (for requests
// carrying x-oci-route: example). It gets the API profile's key, in a region
// of its own.
func examplePin(t *testing.T, s *stack, region string) {
	key := signertest.Key(t, 1)
	s.folder.AppendConfig("EXAMPLE", "user", "ocid1.user.oc1..uexample", "fingerprint", signer.Fingerprint(&key.PublicKey),
		"key_file", s.folder.WrittenPath("keys/api.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", region)
	s.oci.RegisterAPIKey(signertest.APIKeyID("EXAMPLE", &key.PublicKey), &key.PublicKey)
}

// keyIDOf is the keyId a profile of the stack signs with.
func (s *stack) keyIDOf(profile string) string {
	switch profile {
	case "API":
		return s.apiKeyID
	case "SESSION":
		return "ST$" + s.session.Token
	case "EXAMPLE":
		return signertest.APIKeyID("EXAMPLE", &signertest.Key(s.t, 1).PublicKey)
	}
	s.t.Fatalf("no profile %s in the table's stacks", profile)
	return ""
}

func (s *stack) runCase(t *testing.T, c e2eCase) {
	var body io.Reader
	if c.body != nil {
		body = c.body.reader()
	}
	req := s.request(c.method, c.host, c.target, body)
	if c.body != nil {
		req.ContentLength = c.body.length()
		if c.body.chunked {
			req.ContentLength = -1 // net/http sends Transfer-Encoding: chunked
		}
	}
	for k, v := range foreign {
		req.Header.Set(k, v)
	}
	for k, v := range kept {
		req.Header.Set(k, v)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	before := len(s.oci.Requests())
	a := s.do(req)
	got := s.oci.Requests()[before:]
	if a.status != c.status {
		reason := ""
		if len(got) > 0 {
			reason = " (OCI: " + got[0].Reason + ")"
		}
		t.Fatalf("status %d, want %d: %.300s%s", a.status, c.status, a.body, reason)
	}
	switch {
	case c.refusal != "":
		code, msg := a.refusal(t)
		if code != c.refusal {
			t.Errorf("refusal %s, want %s: %s", code, c.refusal, msg)
		}
		for _, w := range c.says {
			if !strings.Contains(msg, w) {
				t.Errorf("the refusal does not say %q: %s", w, msg)
			}
		}
	case c.answer != "":
		if string(a.body) != c.answer || a.header.Get(extproc.HeaderRefused) != "" {
			t.Errorf("answer %q (refusal header %q), want Envoy's own %q", a.body, a.header.Get(extproc.HeaderRefused), c.answer)
		}
	}
	if c.oci == nil {
		if len(got) != 0 {
			t.Fatalf("OCI received %d requests, want none", len(got))
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("OCI received %d requests, want 1", len(got))
	}
	s.checkAtOCI(t, c, a, got[0])
}

// checkAtOCI checks what OCI received for a signed case.
func (s *stack) checkAtOCI(t *testing.T, c e2eCase, a answer, rec signertest.Received) {
	w := c.oci
	if !rec.OK || !strings.EqualFold(rec.Host, w.host) || rec.RequestURI != w.target || rec.KeyID != s.keyIDOf(w.profile) {
		t.Fatalf("OCI received %s %s%s signed by %s, verified %v (%s); want %s%s signed by %s",
			rec.Method, rec.Host, rec.RequestURI, signer.MaskKeyID(rec.KeyID), rec.OK, rec.Reason, w.host, w.target, w.profile)
	}
	if bodySigned := slices.Contains(rec.SignedHeaders, "x-content-sha256"); bodySigned != w.bodySigned {
		t.Errorf("x-content-sha256 signed: %v, want %v (signed headers %v)", bodySigned, w.bodySigned, rec.SignedHeaders)
	}
	for k := range foreign {
		if v := rec.Header.Values(k); len(v) > 0 && (k != "Authorization" || strings.Contains(strings.Join(v, ","), "Bearer")) {
			t.Errorf("%s reached OCI: %q", k, v)
		}
	}
	for k, v := range kept {
		if rec.Header.Get(k) != v {
			t.Errorf("%s, which names no secret, did not reach OCI as sent", k)
		}
	}
	for _, h := range []string{"X-Oci-Profile", "X-Oci-Route"} {
		if rec.Header.Get(h) != "" {
			t.Errorf("%s reached OCI", h)
		}
	}
	if c.body != nil {
		n := c.body.length()
		// Signed or not, a body leaves with its length, never chunked.
		if rec.BodyLength != n || rec.BodySHA256 != c.body.sha256() || rec.ContentLength != n || len(rec.TransferEncoding) != 0 {
			t.Errorf("OCI received %d bytes (content-length %d, transfer-encoding %v), want the %d sent", rec.BodyLength, rec.ContentLength, rec.TransferEncoding, n)
		}
	}
	// The answer made its way back: OCI's echo of what it received.
	if c.method != "HEAD" && !strings.HasPrefix(w.target, uploadPath) && w.target != "/n/" {
		if e := a.echo(t); e.Path != rec.RequestURI || e.BodyLength != rec.BodyLength || e.BodySHA256 != rec.BodySHA256 {
			t.Errorf("the client got %+v, not OCI's answer", e)
		}
	}
}
