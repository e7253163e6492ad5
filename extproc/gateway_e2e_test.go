package extproc_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// withRewrite adds a router rewrite to the OCI routes of the shipped
// configuration: what Envoy's router would do after ext_proc, had someone
// configured one.
func withRewrite(rewrite func(authority, path string) (string, string)) func(*extproctest.Config) {
	return func(c *extproctest.Config) {
		routes := c.Routes
		c.Routes = func(r extproctest.RouteRequest) extproctest.Route {
			rt := routes(r)
			if rt.Direct == nil {
				rt.Rewrite = rewrite
			}
			return rt
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
// gateway and nothing else: this is docs/usage.md's Go example, verbatim,
// against the Envoy stand-in, ocisigner and a Generative AI stand-in that
// verifies the request as OCI does (signature over the real host and path,
// body digest, opc-compartment-id, no Bearer token).
func TestOpenAISDKThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
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
	// The stand-in marks the hold after flushing the event before it, so
	// the client may read that event first: wait for the mark.
	select {
	case <-gate.Reached():
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in never reached its held event")
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
	s := newStack(t, stackOptions{})
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
			// An alias with a path prefix sends it before the client's path;
			// the host itself takes the path as it is.
			for form, target := range map[string]string{"/" + alias.Name + rest: alias.Target(rest), "/" + host + rest: rest} {
				t.Run(p.profile+form, func(t *testing.T) {
					req := s.request("GET", gateway, form, nil)
					req.Header.Set("x-oci-profile", p.profile)
					if a := s.do(req); a.status != 200 {
						t.Fatalf("status %d: %s", a.status, a.body)
					}
					rec := s.lastRecord()
					if rec.Host != host || rec.RequestURI != target || rec.KeyIDKind != p.kind || !rec.OK {
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

// The route's compartment is used for a Generative AI request that names
// none, and a client's own compartment is left alone.
func TestGatewayCompartmentFromTheRoute(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{envoy: func(c *extproctest.Config) {
		c.Metadata = func(r *http.Request) map[string]string {
			if r.Header.Get("x-route") == "team" {
				return map[string]string{"x-oci-compartment": "ocid1.compartment.oc1..team"}
			}
			return nil
		}
	}})
	genai := signertest.NewGenAI(s.oci)
	for _, tc := range []struct{ route, client, want string }{
		{"team", "", "ocid1.compartment.oc1..team"},
		{"team", "ocid1.compartment.oc1..mine", "ocid1.compartment.oc1..mine"},
		{"", "", "ocid1.tenancy.oc1..test"},
	} {
		req := s.request("POST", gateway, "/genai/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.route != "" {
			req.Header.Set("x-route", tc.route)
		}
		if tc.client != "" {
			req.Header.Set("opc-compartment-id", tc.client)
		}
		if a := s.do(req); a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		calls := genai.Calls()
		if c := calls[len(calls)-1]; c.Compartment != tc.want {
			t.Fatalf("route %q, client %q: compartment %q, want %q", tc.route, tc.client, c.Compartment, tc.want)
		}
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
			s := newStack(t, stackOptions{envoy: withRewrite(tc.rewrite)})
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

// The Go example of docs/usage.md is TestOpenAISDKThroughTheGateway's
// client, verbatim and in one piece, so that what the docs show is what is
// tested.
func TestUsageGoExampleIsTheTest(t *testing.T) {
	readme, err := os.ReadFile("../docs/usage.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Go (`github.com/openai/openai-go/v3`")
	_, block, ok2 := strings.Cut(after, "```go tested\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/usage.md has no Go example for the OpenAI SDK")
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
		t.Fatalf("the Go example of docs/usage.md is not in the test verbatim:\n%s", block)
	}
}

// Refusals of a host that is not OCI's say what the client can do, and
// advise --allow-host only for a host that could be an OCI endpoint under
// another name: never for a public host, whose operator would then hand it
// signatures.
func TestHostRefusalsPointTheRightWay(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	for _, tc := range []struct {
		name, host, target string
		want               []string
		never              []string
	}{
		{"another provider's model API", "api.openai.com", "/v1/chat/completions", []string{"genai/openai/v1"}, []string{"--allow-host"}},
		{"a public host", "example.com", "/", []string{`"example.com" is not one`}, []string{"--allow-host"}},
		{"a private name", "myhost.internal", "/", []string{"--allow-host myhost.internal"}, nil},
		{"a private address", "10.1.2.3:8443", "/", []string{"--allow-host 10.1.2.3"}, nil}, // the port is stripped (strip_any_host_port)
		{"the gateway itself", gateway, "/", []string{"/<OCI host or service alias>/<path>"}, []string{"--allow-host"}},
		{"OpenAI's path without the alias", gateway, "/openai/v1/chat/completions", []string{"did you mean /genai/openai/v1/chat/completions?"}, []string{"--allow-host"}},
		{"a base URL of /v1", gateway, "/v1/models", []string{"did you mean /genai/openai/v1/models?"}, []string{"--allow-host"}},
		{"a mistyped alias", gateway, "/objectstorag/n/", []string{"did you mean objectstorage?"}, []string{"--allow-host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := s.do(s.request("GET", tc.host, tc.target, nil))
			code, msg := a.refusal(t)
			if a.status != http.StatusForbidden || code != extproc.CodeHostNotAllowed {
				t.Fatalf("%d %s %q", a.status, code, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("lacks %q: %s", w, msg)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(msg, n) {
					t.Errorf("says %q: %s", n, msg)
				}
			}
		})
	}
	if len(s.oci.Requests()) != 0 {
		t.Fatal("a refused request reached OCI")
	}
}
