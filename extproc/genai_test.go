package extproc_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

const (
	inferenceHost = "inference.generativeai.us-chicago-1.oci.oraclecloud.com"
	controlHost   = "generativeai.us-chicago-1.oci.oraclecloud.com"
	testTenancy   = "ocid1.tenancy.oc1..tenancy"
	routeProject  = "ocid1.generativeaiproject.oc1.us-chicago-1.route"
	flagProject   = "ocid1.generativeaiproject.oc1.us-chicago-1.flag"
	clientProject = "ocid1.generativeaiproject.oc1.us-chicago-1.client"
)

// genaiServer is a service with an API key whose tenancy is testTenancy.
func genaiServer(t *testing.T, edit func(*extproc.Config)) *extproc.Server {
	t.Helper()
	k := signertest.Key(t, 1)
	creds := signer.StaticSource{C: &signer.Credentials{KeyID: "t/u/" + signer.Fingerprint(&k.PublicKey), Key: k, Kind: signer.KindAPIKey,
		Region: "us-chicago-1", Tenancy: testTenancy}}
	cfg := extproc.Config{Credentials: staticCredentials{creds}}
	if edit != nil {
		edit(&cfg)
	}
	s, err := extproc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func post(host, path string, kv ...string) extproc.PreviewRequest {
	r := extproc.PreviewRequest{Method: http.MethodPost, Authority: host, Path: path, Body: []byte(`{}`),
		Header: []signer.Field{{Name: "content-type", Value: "application/json"}}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header = append(r.Header, signer.Field{Name: kv[i], Value: kv[i+1]})
	}
	return r
}

// set is what the service sets, by lower-case name, for the headers the test looks at.
func genaiSet(p *extproc.Preview) map[string]string {
	out := map[string]string{}
	for _, f := range p.Set {
		switch n := strings.ToLower(f.Name); n {
		case "opc-compartment-id", "compartmentid", "openai-project", "opc-conversation-store-id":
			if _, dup := out[n]; dup {
				out[n] = "SET TWICE"
				continue
			}
			out[n] = f.Value
		}
	}
	return out
}

// The project of an /openai/v1 request, on either host: the client's is
// kept, else the route's, else the flag's; with none the request goes on
// without one. Other paths get none.
func TestGenAIProjectFromClientRouteOrFlag(t *testing.T) {
	for _, tc := range []struct {
		name        string
		req         extproc.PreviewRequest
		route, flag string
		want        string // openai-project set by the service; "" none
	}{
		{"client's kept", post(inferenceHost, "/openai/v1/responses", "OpenAI-Project", clientProject), routeProject, flagProject, ""},
		{"route's", post(inferenceHost, "/openai/v1/responses"), routeProject, flagProject, routeProject},
		{"flag's", post(inferenceHost, "/openai/v1/files"), "", flagProject, flagProject},
		{"none", post(inferenceHost, "/openai/v1/responses"), "", "", ""},
		{"control plane", post(controlHost, "/20231130/openai/v1/vector_stores"), "", flagProject, flagProject},
		{"base itself", post(inferenceHost, "/openai/v1?x=1"), "", flagProject, flagProject},
		{"not /openai/v1: actions", post(inferenceHost, "/20231130/actions/v1/chat/completions"), routeProject, flagProject, ""},
		{"not /openai/v1: a longer segment", post(inferenceHost, "/openai/v10/responses"), routeProject, flagProject, ""},
		{"not Generative AI", post("objectstorage.us-chicago-1.oraclecloud.com", "/openai/v1/x"), routeProject, flagProject, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := genaiServer(t, func(c *extproc.Config) { c.GenAIProject = tc.flag })
			if tc.route != "" {
				tc.req.Metadata = map[string]string{extproc.DefaultProjectKey: tc.route}
			}
			p := s.Preview(context.Background(), tc.req)
			if p.Refused != nil {
				t.Fatalf("refused: %+v", p.Refused)
			}
			if got := genaiSet(p)["openai-project"]; got != tc.want {
				t.Fatalf("openai-project set to %q, want %q", got, tc.want)
			}
		})
	}
	// A route whose project is not a project's OCID is the operator's mistake.
	s := genaiServer(t, nil)
	req := post(inferenceHost, "/openai/v1/responses")
	req.Metadata = map[string]string{extproc.DefaultProjectKey: "ocid1.compartment.oc1..notaproject"}
	if p := s.Preview(context.Background(), req); p.Refused == nil || p.Refused.Code != extproc.CodeMisconfigured || p.Signed != nil {
		t.Fatalf("a route's compartment OCID as project: %+v", p.Refused)
	}
}

// The compartment spellings, per endpoint, as Oracle's helpers send them:
// both on the inference host's OpenAI-compatible paths, opc-compartment-id
// alone on its native API and on the control plane's /20231130/openai/v1,
// nothing on the control plane's native API. A client's own compartment,
// in either spelling, is what both carry.
func TestGenAICompartmentSpellingsPerEndpoint(t *testing.T) {
	const mine = "ocid1.compartment.oc1..mine"
	for _, tc := range []struct {
		name string
		req  extproc.PreviewRequest
		want map[string]string
	}{
		{"inference /openai/v1", post(inferenceHost, "/openai/v1/chat/completions"),
			map[string]string{"opc-compartment-id": testTenancy, "compartmentid": testTenancy}},
		{"inference actions/v1", post(inferenceHost, "/20231130/actions/v1/chat/completions"),
			map[string]string{"opc-compartment-id": testTenancy, "compartmentid": testTenancy}},
		{"inference native", post(inferenceHost, "/20231130/actions/chat"), map[string]string{"opc-compartment-id": testTenancy}},
		{"control plane /openai/v1", post(controlHost, "/20231130/openai/v1/vector_stores"), map[string]string{"opc-compartment-id": testTenancy}},
		{"control plane native", post(controlHost, "/20231130/dedicatedAiClusters"), map[string]string{}},
		{"client's new spelling", post(inferenceHost, "/openai/v1/chat/completions", "opc-compartment-id", mine), map[string]string{"compartmentid": mine}},
		{"client's old spelling", post(inferenceHost, "/20231130/actions/v1/chat/completions", "CompartmentId", mine), map[string]string{"opc-compartment-id": mine}},
		{"client's both", post(inferenceHost, "/openai/v1/chat/completions", "CompartmentId", mine, "opc-compartment-id", mine), map[string]string{}},
		{"client's on the control plane", post(controlHost, "/20231130/openai/v1/vector_stores", "opc-compartment-id", mine), map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := genaiServer(t, func(c *extproc.Config) { c.GenAIProject = flagProject }).Preview(context.Background(), tc.req)
			if p.Refused != nil {
				t.Fatalf("refused: %+v", p.Refused)
			}
			got := genaiSet(p)
			delete(got, "openai-project")
			if len(got) != len(tc.want) {
				t.Fatalf("set %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("set %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// A Responses or Files request with a project but no compartment anyone
// knows goes on (the project names where it belongs); a chat request
// without either is refused as before.
func TestGenAIProjectStandsInForTheCompartment(t *testing.T) {
	k := signertest.Key(t, 1)
	noTenancy := signer.StaticSource{C: &signer.Credentials{KeyID: "t/u/" + signer.Fingerprint(&k.PublicKey), Key: k, Kind: signer.KindAPIKey, Region: "us-chicago-1"}}
	s, err := extproc.New(extproc.Config{Credentials: staticCredentials{noTenancy}, GenAIProject: flagProject})
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Preview(context.Background(), post(inferenceHost, "/openai/v1/responses")); p.Refused != nil || genaiSet(p)["openai-project"] != flagProject {
		t.Fatalf("Responses with a project: %+v %v", p.Refused, p.Set)
	}
	if p := s.Preview(context.Background(), post(inferenceHost, "/20231130/actions/v1/chat/completions")); p.Refused == nil || p.Refused.Code != extproc.CodeNoCompartment {
		t.Fatalf("chat without a compartment: %+v", p.Refused)
	}
}

// Every Generative AI header a client sends is hostile input: sent twice,
// empty, with CR, LF, NUL or a space, longer than an OCID, or the two
// compartment spellings disagreeing, it is refused before anything is
// signed. A conversation store that is none of these passes as sent.
func TestGenAIHostileHeadersRefusedBeforeSigning(t *testing.T) {
	const ocid = "ocid1.compartment.oc1..x"
	long := "ocid1.compartment.oc1.." + strings.Repeat("a", 240)
	for _, tc := range []struct {
		name string
		kv   []string
		say  string
	}{
		{"CR LF in the compartment", []string{"opc-compartment-id", ocid + "\r\nx-injected: 1"}, "byte 0x0d"},
		{"LF in the project", []string{"OpenAI-Project", "ocid1.generativeaiproject.oc1..p\nx: 1"}, "byte 0x0a"},
		{"NUL in the conversation store", []string{"opc-conversation-store-id", "ocid1.x\x00"}, "byte 0x00"},
		{"a space", []string{"CompartmentId", ocid + " extra"}, "byte 0x20"},
		{"non-ASCII", []string{"OpenAI-Project", "ocid1.generativeaiproject.oc1..pé"}, "byte 0xc3"},
		{"too long", []string{"opc-compartment-id", long}, "longer than any OCID"},
		{"empty", []string{"OpenAI-Project", ""}, "is empty"},
		{"twice", []string{"opc-compartment-id", ocid, "opc-compartment-id", ocid}, "2 times"},
		{"the old spelling twice", []string{"CompartmentId", ocid, "compartmentid", ocid}, "2 times"},
		{"spellings disagree", []string{"opc-compartment-id", ocid, "CompartmentId", ocid + "y"}, "different compartments"},
		{"conversation store twice", []string{"opc-conversation-store-id", "a", "opc-conversation-store-id", "b"}, "2 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ host, path string }{
				{inferenceHost, "/openai/v1/responses"}, {controlHost, "/20231130/openai/v1/vector_stores"},
			} {
				p := genaiServer(t, nil).Preview(context.Background(), post(target.host, target.path, tc.kv...))
				if p.Refused == nil || p.Refused.Status != http.StatusBadRequest || p.Refused.Code != extproc.CodeInvalidHeader || p.Signed != nil {
					t.Fatalf("%s%s: %+v, signed %v", target.host, target.path, p.Refused, p.Signed != nil)
				}
				if !strings.Contains(p.Refused.Message, tc.say) || strings.ContainsAny(p.Refused.Message, "\r\n\x00") {
					t.Fatalf("message %q, want it to say %q and quote no control byte", p.Refused.Message, tc.say)
				}
			}
		})
	}
	const store = "ocid1.generativeaiconversationstore.oc1..s"
	p := genaiServer(t, nil).Preview(context.Background(), post(inferenceHost, "/openai/v1/responses", "opc-conversation-store-id", store))
	if p.Refused != nil || p.Signed == nil {
		t.Fatalf("a valid conversation store: %+v", p.Refused)
	}
	if _, set := genaiSet(p)["opc-conversation-store-id"]; set || slices.Contains(p.Remove, "opc-conversation-store-id") {
		t.Fatal("the conversation store was changed")
	}
}
