package extproc_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// gatewayForm configures the Envoy stand-in as envoy.yaml's catch-all
// virtual host with its gateway ext_proc filter: the signer may set
// :authority (and nothing else beyond the defaults), the route is matched
// again after its answer, the dynamic forward proxy connects to the host
// the signer set (every realm host resolves to the OCI stand-in here), and
// a request the signer did not re-address meets the catch-all's 403.
func gatewayForm(rewrite func(authority, path string) (string, string)) func(*extproctest.Config) {
	return func(c *extproctest.Config) {
		oci := c.Upstream
		c.MutationRules = extproctest.GatewayMutationRules()
		c.RouteCacheAction = extprocfilterv3.ExternalProcessor_CLEAR
		c.ReceivingNamespaces = []string{extproc.MetadataNamespace}
		c.Proxy100Continue = true
		c.Routes = func(r extproctest.RouteRequest) extproctest.Route {
			if signer.IsRealmHost(r.Authority) {
				return extproctest.Route{Name: "oci", Rewrite: rewrite}
			}
			return extproctest.Route{Name: "gateway", Direct: &extproctest.DirectResponse{Status: http.StatusForbidden,
				Body: `{"code":"NotAllowed","message":"ocisigner gateway: host is not an OCI API endpoint"}`}}
		}
		c.Resolve = func(authority string) (string, error) {
			if signer.IsRealmHost(authority) {
				return oci, nil
			}
			return "", fmt.Errorf("%s is not an OCI host", authority)
		}
	}
}

// gateway is the host clients address: the gateway itself.
const gateway = "localhost"

// euProfile adds an API-key profile in a realm with another domain (oc19,
// oraclecloud.eu) and registers its key with the OCI stand-in.
func euProfile(t *testing.T, s *stack) {
	key := signertest.Key(t, 1)
	s.folder.AppendConfig("EU", "user", "ocid1.user.oc1..ueu", "fingerprint", signer.Fingerprint(&key.PublicKey),
		"key_file", s.folder.WrittenPath("keys/api.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", "eu-frankfurt-2")
	s.oci.RegisterAPIKey(signertest.APIKeyID("EU", &key.PublicKey), &key.PublicKey)
}

// Every OpenAI SDK reaches OCI Generative AI with its base URL set to the
// gateway and nothing else: this is the README's Go example, verbatim,
// against the Envoy stand-in, ocisigner and a Generative AI stand-in that
// verifies the request as OCI does (signature over the real host and path,
// body digest, opc-compartment-id, no Bearer token).
func TestOpenAISDKThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{envoy: gatewayForm(nil)})
	genai := signertest.NewGenAI(s.oci)
	gatewayURL := s.envoy.URL() // http://localhost:10000 with docker compose up gateway
	ctx := context.Background()

	client := openai.NewClient(
		option.WithBaseURL(gatewayURL+"/genai/openai/v1"),
		option.WithAPIKey("unused"), // ocisigner signs with your OCI profile instead
	)
	completion, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "meta.llama-3.3-70b-instruct",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := completion.Choices[0].Message.Content; got != signertest.DefaultGenAIReply {
		t.Fatalf("reply %q", got)
	}
	const genaiHost = "inference.generativeai.us-ashburn-1.oci.oraclecloud.com"
	rec := s.lastRecord()
	if !rec.OK || rec.Host != genaiHost || rec.RequestURI != "/openai/v1/chat/completions" || rec.KeyID != s.apiKeyID {
		t.Fatalf("OCI received %s %s%s as %s (ok %v: %s)", rec.Method, rec.Host, rec.RequestURI, rec.KeyID, rec.OK, rec.Reason)
	}
	if !strings.Contains(strings.Join(rec.SignedHeaders, " "), "x-content-sha256") {
		t.Fatalf("the body is not signed: %v", rec.SignedHeaders)
	}
	for k, vs := range rec.Header {
		for _, v := range vs {
			if strings.Contains(strings.ToLower(v), "bearer") || strings.Contains(v, "unused") {
				t.Fatalf("the client's API key reached OCI in %s: %s", k, v)
			}
		}
	}
	call := genai.Calls()[0]
	if call.Compartment != "ocid1.tenancy.oc1..test" {
		t.Fatalf("compartment %q, want the profile's tenancy", call.Compartment)
	}

	// Streamed: every event reaches the client as the stand-in writes it.
	// The stand-in holds its last event until the client has the others.
	const events = 64
	genai.SetChunks(events)
	gate := genai.HoldNextStream()
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:    "openai.gpt-oss-120b",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count.")},
	})
	got := 0
	for got < events-1 && stream.Next() {
		got++
	}
	select {
	case <-gate.Reached():
	default:
		t.Fatal("the client read events the stand-in had not reached")
	}
	if got != events-1 || gate.Written() != events-1 {
		t.Fatalf("the client had %d events while the stand-in held its last (%d written): the stream is buffered", got, gate.Written())
	}
	gate.Release()
	for stream.Next() {
		got++
	}
	if err := stream.Err(); err != nil || got != events {
		t.Fatalf("%d events, want %d: %v", got, events, err)
	}
}

// Both URL forms reach every service of the alias table, in two realms, for
// a session and an API-key profile; the path after the first segment,
// query, percent-encoding and // included, goes upstream byte for byte.
func TestGatewayFormsReachEveryAlias(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{envoy: gatewayForm(nil)})
	euProfile(t, s)
	const rest = "/a%2Fb//c?b=2&a=1&x=%41"
	for _, p := range []struct {
		profile string
		region  signer.Region
		kind    signertest.KeyIDKind
	}{
		{"API", signer.MustParseRegion("us-ashburn-1"), signertest.KeyIDAPIKey},
		{"EU", signer.MustParseRegion("eu-frankfurt-2"), signertest.KeyIDAPIKey},
		{"SESSION", signer.MustParseRegion("us-phoenix-1"), signertest.KeyIDSession},
	} {
		for _, alias := range signer.Aliases() {
			host, err := alias.Host(p.region)
			if err != nil {
				t.Fatal(err)
			}
			for _, form := range []string{"/" + alias.Name + rest, "/" + host + rest} {
				t.Run(p.profile+form, func(t *testing.T) {
					req := s.request("GET", gateway, form, nil)
					req.Header.Set("x-oci-profile", p.profile)
					if a := s.do(req); a.status != 200 {
						t.Fatalf("status %d: %s", a.status, a.body)
					}
					rec := s.lastRecord()
					if rec.Host != host || rec.RequestURI != rest || rec.KeyIDKind != p.kind || !rec.OK {
						t.Fatalf("OCI received %s%s as %s: %s", rec.Host, rec.RequestURI, rec.KeyIDKind, rec.Reason)
					}
				})
			}
		}
	}
	if p := signer.MustParseRegion("eu-frankfurt-2"); p.Domain == signer.MustParseRegion("us-ashburn-1").Domain {
		t.Fatal("the two realms share a domain: the test shows nothing about realms")
	}
}

// The route's pin chooses the region an alias resolves to, as the
// request header does.
func TestGatewayAliasFollowsTheRoutesProfile(t *testing.T) {
	t.Parallel()
	pinned := func(c *extproctest.Config) {
		gatewayForm(nil)(c)
		c.Metadata = func(r *http.Request) map[string]string {
			if r.Header.Get("x-route") == "eu" {
				return map[string]string{"x-oci-profile": "EU", "x-oci-compartment": "ocid1.compartment.oc1..eu"}
			}
			return nil
		}
	}
	s := newStack(t, stackOptions{envoy: pinned})
	euProfile(t, s)
	genai := signertest.NewGenAI(s.oci)
	req := s.request("POST", gateway, "/genai/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-route", "eu")
	req.Header.Set("Content-Type", "application/json")
	if a := s.do(req); a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if rec := s.lastRecord(); rec.Host != "inference.generativeai.eu-frankfurt-2.oci.oraclecloud.eu" {
		t.Fatalf("the route's profile did not choose the region: %s", rec.Host)
	}
	if c := genai.Calls()[0]; c.Compartment != "ocid1.compartment.oc1..eu" {
		t.Fatalf("compartment %q, want the route's", c.Compartment)
	}
	// A compartment the client names itself is left alone.
	req = s.request("POST", gateway, "/genai/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("opc-compartment-id", "ocid1.compartment.oc1..mine")
	if a := s.do(req); a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if c := genai.Calls()[1]; c.Compartment != "ocid1.compartment.oc1..mine" {
		t.Fatalf("compartment %q, want the client's", c.Compartment)
	}
}

// Gateway addresses that cannot be read one way only are refused with 400,
// and an explicit host outside the OCI realms with the same 403 as a
// proxy-form request for it; nothing reaches OCI.
func TestGatewayFormsRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{envoy: gatewayForm(nil)})
	s.folder.AppendConfig("NOREGION", "user", "ocid1.user.oc1..unoregion", "fingerprint", signer.Fingerprint(&signertest.Key(t, 1).PublicKey),
		"key_file", s.folder.WrittenPath("keys/api.pem"), "tenancy", "ocid1.tenancy.oc1..test")
	for _, tc := range []struct {
		name, target, profile string
		status                int
		code, reason          string
	}{
		{"an explicit host outside the realms", "/example.com/n/", "", 403, extproc.CodeHostNotAllowed, "--allow-host"},
		{"an IP literal", "/127.0.0.1:8080/n/", "", 403, extproc.CodeHostNotAllowed, "--allow-host"},
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
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.oci.Requests())
			req := s.request("GET", gateway, tc.target, nil)
			if tc.profile != "" {
				req.Header.Set("x-oci-profile", tc.profile)
			}
			a := s.do(req)
			code, msg := a.refusal(t)
			if a.status != tc.status || code != tc.code || !strings.Contains(msg, tc.reason) {
				t.Fatalf("%d %s %q, want %d %s saying %q", a.status, code, msg, tc.status, tc.code, tc.reason)
			}
			if len(s.oci.Requests()) != before {
				t.Fatal("a refused request reached OCI")
			}
		})
	}
	// Proxy form, unchanged: the real host as Host, no rewriting.
	if a := s.do(s.request("GET", osHost, "/n/", nil)); a.status != 200 {
		t.Fatalf("proxy form: %d %s", a.status, a.body)
	}
}

// A signed request never leaves with a host or path other than the one
// signed: when something after ext_proc (a router rewrite) changes either,
// OCI refuses it.
func TestRewriteAfterSigningIsRefusedByOCI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		rewrite func(authority, path string) (string, string)
	}{
		{"host", func(a, p string) (string, string) { return "objectstorage.us-phoenix-1.oraclecloud.com", p }},
		{"path", func(a, p string) (string, string) { return a, "/n/other" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, stackOptions{envoy: gatewayForm(tc.rewrite)})
			a := s.do(s.request("GET", gateway, "/objectstorage/n/", nil))
			rec := s.lastRecord()
			if a.status != http.StatusUnauthorized || rec.OK || rec.Code != signertest.CodeNotAuthenticated {
				t.Fatalf("OCI answered %d (%s) to a request changed after signing: %s", a.status, rec.Code, rec.Reason)
			}
		})
	}
}

// The access log line says which profile got which answer: ocisigner's
// dynamic metadata next to OCI's status, as envoy.yaml's format prints it.
func TestAccessLogSaysWhichProfileGotWhichAnswer(t *testing.T) {
	lines := make(chan string, 8)
	s := newStack(t, stackOptions{envoy: func(c *extproctest.Config) {
		gatewayForm(nil)(c)
		c.AccessLog = func(e extproctest.AccessLogEntry) {
			line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
			if err != nil {
				t.Error(err)
			}
			lines <- line
		}
	}})
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no access log line")
			return ""
		}
	}
	req := s.request("GET", gateway, "/objectstorage/n/", nil)
	req.Header.Set("x-oci-profile", "SESSION")
	if a := s.do(req); a.status != 200 {
		t.Fatal(a.status)
	}
	line := next()
	for _, want := range []string{" 200 via_upstream ", "upstream=objectstorage.us-phoenix-1.oraclecloud.com", "profile=SESSION",
		"principal=security_token", "key_id=ST$", "…", "outcome=signed"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, s.session.Token) {
		t.Fatal("the access log holds the whole token")
	}
	req = s.request("GET", gateway, "/objectstorage/n/", nil)
	req.Header.Set("x-oci-profile", "EXPIRED")
	if a := s.do(req); a.status != 401 {
		t.Fatal(a.status)
	}
	line = next()
	for _, want := range []string{" 401 ocisigner_CredentialsExpired_401 ", "profile=EXPIRED", "outcome=CredentialsExpired"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %q:\n%s", want, line)
		}
	}
}

// The README's Go example is TestOpenAISDKThroughTheGateway's client,
// verbatim, so that what the README shows is what is tested.
func TestREADMEGoExampleIsTheTest(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Go (`github.com/openai/openai-go/v3`")
	_, block, ok2 := strings.Cut(after, "```go\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no Go example for the OpenAI SDK")
	}
	src, err := os.ReadFile("gateway_e2e_test.go")
	if err != nil {
		t.Fatal(err)
	}
	trim := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	want, have := strings.Join(trim(block), "\n"), strings.Join(trim(string(src)), "\n")
	if len(trim(block)) < 5 || !strings.Contains(have, want) {
		t.Fatalf("the README's Go example is not in the test verbatim:\n%s", block)
	}
}
