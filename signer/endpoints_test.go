package signer_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/oracle/oci-go-sdk/v65/audit"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/generativeaiinference"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// How the alias table is held to the SDK. Compiling every SDK client the
// table names would cost minutes of the suite's build (core and database
// alone are over 20 MB of source), so TestAliasesMatchSDKSource reads each
// client's SetRegion from the SDK source in the module cache, takes the
// template it passes to EndpointForTemplate[DottedRegion], and renders it
// with the SDK's own functions, as the client does. TestAliasesMatchSDKClients
// then builds real clients for three of them, one per shape of SetRegion the
// SDK has (plain EndpointForTemplate; the dotted-region form with a literal
// template; the dotted-region form with a per-realm template method), and
// checks the host a request would go to, which shows that reading the source
// gives what the clients do.

// sdkClient is an oci-go-sdk client: its file relative to the module root,
// and its type.
type sdkClient struct{ file, typ string }

// aliasSDK names, for every built-in alias, the SDK clients whose host it is.
var aliasSDK = map[string][]sdkClient{
	"audit":           {{"audit/audit_client.go", "AuditClient"}},
	"containerengine": {{"containerengine/containerengine_client.go", "ContainerEngineClient"}},
	"core": {
		{"core/core_compute_client.go", "ComputeClient"},
		{"core/core_virtualnetwork_client.go", "VirtualNetworkClient"},
		{"core/core_blockstorage_client.go", "BlockstorageClient"},
		{"loadbalancer/loadbalancer_client.go", "LoadBalancerClient"},
		{"workrequests/workrequests_workrequest_client.go", "WorkRequestClient"},
	},
	"database":     {{"database/database_client.go", "DatabaseClient"}},
	"functions":    {{"functions/functions_functionsmanagement_client.go", "FunctionsManagementClient"}},
	"genai":        {{"generativeaiinference/generativeaiinference_client.go", "GenerativeAiInferenceClient"}},
	"genai-agent":  {{"generativeaiagentruntime/generativeaiagentruntime_client.go", "GenerativeAiAgentRuntimeClient"}},
	"generativeai": {{"generativeai/generativeai_client.go", "GenerativeAiClient"}},
	"identity":     {{"identity/identity_client.go", "IdentityClient"}},
	"kms":          {{"keymanagement/keymanagement_kmsvault_client.go", "KmsVaultClient"}},
	"logging": {
		{"logging/logging_loggingmanagement_client.go", "LoggingManagementClient"},
		{"loggingsearch/loggingsearch_logsearch_client.go", "LogSearchClient"},
	},
	"loggingingestion": {{"loggingingestion/loggingingestion_logging_client.go", "LoggingClient"}},
	"monitoring":       {{"monitoring/monitoring_client.go", "MonitoringClient"}},
	"objectstorage":    {{"objectstorage/objectstorage_client.go", "ObjectStorageClient"}},
	"resourcesearch":   {{"resourcesearch/resourcesearch_client.go", "ResourceSearchClient"}},
	"secrets":          {{"secrets/secrets_client.go", "SecretsClient"}},
	"usageapi":         {{"usageapi/usageapi_client.go", "UsageapiClient"}},
	"vault":            {{"vault/vault_vaults_client.go", "VaultsClient"}},
}

// aliasRegions are regions of three realms with three different domains.
var aliasRegions = []string{"us-ashburn-1", "eu-frankfurt-2", "uk-gov-london-1"}

// sdkDefaults clears the environment variables that change the SDK's
// endpoints (dual-stack hosts, Object Storage's per-realm template), so that
// the SDK renders its default hosts whatever the machine has set.
func sdkDefaults(t *testing.T) {
	t.Setenv("OCI_DUAL_STACK_ENDPOINT_ENABLED", "")
	t.Setenv(common.OciRealmSpecificServiceEndpointTemplateEnabledEnvVar, "")
}

// sdkModuleDir is where the oci-go-sdk this module builds with lies.
func sdkModuleDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/oracle/oci-go-sdk/v65").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("locating oci-go-sdk's source: %v (%q)", err, out)
	}
	return dir
}

// sdkSetRegion is what a client's SetRegion passes to the SDK's endpoint
// function.
type sdkSetRegion struct {
	fn, service, template, endpointServiceName string
}

// readSetRegion parses c's SetRegion in the SDK source. A template method
// (Object Storage's getEndpointTemplatePerRealm) is followed to its final
// return, the template used unless per-realm templates are switched on.
func readSetRegion(t *testing.T, root string, c sdkClient) sdkSetRegion {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, c.file), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	method := func(name string) *ast.FuncDecl {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != name || fd.Recv == nil || len(fd.Recv.List) != 1 {
				continue
			}
			if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := star.X.(*ast.Ident); ok && id.Name == c.typ {
					return fd
				}
			}
		}
		t.Fatalf("%s: no method (*%s).%s", c.file, c.typ, name)
		return nil
	}
	literal := func(e ast.Expr) string {
		t.Helper()
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Fatalf("%s: %T is not a string literal", c.file, e)
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var calls []*ast.CallExpr
	ast.Inspect(method("SetRegion").Body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "EndpointForTemplate") {
				calls = append(calls, call)
			}
		}
		return true
	})
	if len(calls) != 1 {
		t.Fatalf("%s: SetRegion makes %d EndpointForTemplate* calls, want 1", c.file, len(calls))
	}
	call := calls[0]
	out := sdkSetRegion{fn: call.Fun.(*ast.SelectorExpr).Sel.Name, service: literal(call.Args[0])}
	switch a := call.Args[1].(type) {
	case *ast.CallExpr:
		sel, ok := a.Fun.(*ast.SelectorExpr)
		if !ok {
			t.Fatalf("%s: template argument is %T", c.file, a.Fun)
		}
		body := method(sel.Sel.Name).Body.List
		ret, ok := body[len(body)-1].(*ast.ReturnStmt)
		if !ok || len(ret.Results) != 1 {
			t.Fatalf("%s: %s does not end in a return of the default template", c.file, sel.Sel.Name)
		}
		out.template = literal(ret.Results[0])
	default:
		out.template = literal(a)
	}
	switch {
	case out.fn == "EndpointForTemplateDottedRegion" && len(call.Args) == 3:
		out.endpointServiceName = literal(call.Args[2])
	case out.fn == "EndpointForTemplate" && len(call.Args) == 2:
	default:
		t.Fatalf("%s: SetRegion calls %s with %d arguments", c.file, out.fn, len(call.Args))
	}
	return out
}

// resolveHost finishes a client host as every SDK operation does before it
// sends: endpoint options such as {dualStack?ds.:} resolved, then any
// placeholder left dropped.
func resolveHost(host string) string {
	bc := common.BaseClient{Host: host}
	common.UpdateEndpointTemplateForOptions(&bc)
	common.SetMissingTemplateParams(&bc)
	return bc.Host
}

// sdkHost renders what SetRegion would set for region, with the SDK's code.
func sdkHost(t *testing.T, s sdkSetRegion, region string) string {
	t.Helper()
	r := common.StringToRegion(region)
	var host string
	switch s.fn {
	case "EndpointForTemplate":
		host = r.EndpointForTemplate(s.service, s.template)
	case "EndpointForTemplateDottedRegion":
		var err error
		if host, err = r.EndpointForTemplateDottedRegion(s.service, s.template, s.endpointServiceName); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown SDK endpoint function %s", s.fn)
	}
	return resolveHost(host)
}

func aliasHost(t *testing.T, a signer.Alias, region string) string {
	t.Helper()
	h, err := a.Host(signer.MustParseRegion(region))
	if err != nil {
		t.Fatalf("alias %s in %s: %v", a.Name, region, err)
	}
	return h
}

func TestAliasesMatchSDKSource(t *testing.T) {
	sdkDefaults(t)
	root := sdkModuleDir(t)
	aliases := signer.Aliases()
	for _, a := range aliases {
		clients, ok := aliasSDK[a.Name]
		if !ok {
			t.Errorf("alias %s names no SDK client to check its template against", a.Name)
			continue
		}
		for _, c := range clients {
			s := readSetRegion(t, root, c)
			for _, region := range aliasRegions {
				if got, want := "https://"+aliasHost(t, a, region), sdkHost(t, s, region); got != want {
					t.Errorf("alias %s in %s: %s, but %s (%s %q) gives %s", a.Name, region, got, c.typ, s.fn, s.template, want)
				}
			}
		}
	}
	for name := range aliasSDK {
		if _, ok := signer.LookupAlias(name); !ok {
			t.Errorf("the test checks alias %s, which the table does not have", name)
		}
	}
}

// captureHost is an HTTP dispatcher that records the host a client sends
// to and answers 200 without any network.
type captureHost struct{ host string }

func (c *captureHost) Do(req *http.Request) (*http.Response, error) {
	c.host = req.URL.Host
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

func TestAliasesMatchSDKClients(t *testing.T) {
	sdkDefaults(t)
	key := signertest.Key(t, 0)
	provider := common.NewRawConfigurationProvider("ocid1.tenancy.oc1..test", "ocid1.user.oc1..test", "us-ashburn-1",
		signer.Fingerprint(&key.PublicKey), string(signertest.EncodeKey(t, key, signertest.PKCS1, "")), nil)
	newClient := map[string]func() (*common.BaseClient, func(string)){
		"audit": func() (*common.BaseClient, func(string)) {
			c, err := audit.NewAuditClientWithConfigurationProvider(provider)
			if err != nil {
				t.Fatal(err)
			}
			return &c.BaseClient, c.SetRegion
		},
		"genai": func() (*common.BaseClient, func(string)) {
			c, err := generativeaiinference.NewGenerativeAiInferenceClientWithConfigurationProvider(provider)
			if err != nil {
				t.Fatal(err)
			}
			return &c.BaseClient, c.SetRegion
		},
		"objectstorage": func() (*common.BaseClient, func(string)) {
			c, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(provider)
			if err != nil {
				t.Fatal(err)
			}
			return &c.BaseClient, c.SetRegion
		},
	}
	for name, mk := range newClient {
		a, ok := signer.LookupAlias(name)
		if !ok {
			t.Fatalf("no alias %s", name)
		}
		base, setRegion := mk()
		for _, region := range aliasRegions {
			setRegion(region)
			// What every generated operation does with the client before
			// sending; Call then takes the request's host from it.
			bc := *base
			common.UpdateEndpointTemplateForOptions(&bc)
			common.SetMissingTemplateParams(&bc)
			capture := &captureHost{}
			bc.HTTPClient = capture
			req, err := http.NewRequest(http.MethodGet, "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := bc.Call(context.Background(), req)
			if err != nil {
				t.Fatalf("%s in %s: SDK call: %v", name, region, err)
			}
			resp.Body.Close()
			if want := aliasHost(t, a, region); capture.host != want {
				t.Errorf("alias %s in %s: %s, but the SDK client sends to %s", name, region, want, capture.host)
			}
		}
	}
}

func TestAliasTable(t *testing.T) {
	aliases := signer.Aliases()
	if len(aliases) < 12 {
		t.Errorf("only %d aliases", len(aliases))
	}
	if !slices.IsSortedFunc(aliases, func(a, b signer.Alias) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Aliases() is not sorted by name")
	}
	for i, a := range aliases {
		if i > 0 && aliases[i-1].Name == a.Name {
			t.Errorf("alias %s twice", a.Name)
		}
		// Every built-in entry is one an operator could have written.
		parsed, err := signer.ParseAlias(a.Name + "=" + a.Template)
		if err != nil || parsed.Name != a.Name || parsed.Template != a.Template {
			t.Errorf("built-in %s=%s does not parse as itself: %+v, %v", a.Name, a.Template, parsed, err)
		}
		if a.Service == "" {
			t.Errorf("alias %s says nothing of its service", a.Name)
		}
		if got, ok := signer.LookupAlias(a.Name); !ok || got != a {
			t.Errorf("LookupAlias(%s) = %+v, %v", a.Name, got, ok)
		}
	}
	if _, ok := signer.LookupAlias("nosuch"); ok {
		t.Error("LookupAlias found an alias that does not exist")
	}
	// The copy is the caller's.
	aliases[0].Template = "changed.example.com"
	if signer.Aliases()[0].Template == "changed.example.com" {
		t.Error("Aliases() hands out the table itself")
	}
}

func TestAliasHostRendersRegionAndRealm(t *testing.T) {
	genai, _ := signer.LookupAlias("genai")
	for _, tc := range []struct{ region, want string }{
		{"us-chicago-1", "inference.generativeai.us-chicago-1.oci.oraclecloud.com"},
		{"ord", "inference.generativeai.us-chicago-1.oci.oraclecloud.com"},
		{"eu-frankfurt-2", "inference.generativeai.eu-frankfurt-2.oci.oraclecloud.eu"},
		{"uk-gov-london-1", "inference.generativeai.uk-gov-london-1.oci.oraclegovcloud.uk"},
		{"us-langley-1", "inference.generativeai.us-langley-1.oci.oraclegovcloud.com"},
		{"xx-future-1", "inference.generativeai.xx-future-1.oci.oraclecloud.com"},
	} {
		if got, err := genai.Host(signer.MustParseRegion(tc.region)); err != nil || got != tc.want {
			t.Errorf("genai in %s = %q, %v; want %q", tc.region, got, err, tc.want)
		}
	}
}

func TestAliasHostRefusesRegionsThatAreNotALabel(t *testing.T) {
	core, _ := signer.LookupAlias("core")
	for _, region := range []string{"", "evil.example.com#", "us-ashburn-1.attacker.net", "us ashburn", "us-ashburn-1/x", "-us-ashburn-1", "us_ashburn_1"} {
		host, err := core.Host(signer.Region{ID: region, Domain: "oraclecloud.com"})
		if !errors.Is(err, signer.ErrInvalidAlias) {
			t.Errorf("region %q: host %q, err %v; want ErrInvalidAlias", region, host, err)
		} else {
			t.Logf("region %q: %v", region, err)
		}
	}
}

func TestParseAlias(t *testing.T) {
	for _, tc := range []struct {
		name, spec   string
		wantName     string
		wantTemplate string
	}{
		{"built-in shape", "myai=inference.generativeai.{region}.oci.{domain}", "myai", "inference.generativeai.{region}.oci.{domain}"},
		{"digits and hyphens", "genai-2=inference-2.generativeai.{region}.oci.{domain}", "genai-2", "inference-2.generativeai.{region}.oci.{domain}"},
		{"placeholders inside labels", "x=svc-{region}.{domain}", "x", "svc-{region}.{domain}"},
		{"no placeholders", "fixed=signer-test.oraclecloud.com", "fixed", "signer-test.oraclecloud.com"},
		{"upper-case template is folded", "up=Inference.GenerativeAI.{region}.oci.{domain}", "up", "inference.generativeai.{region}.oci.{domain}"},
		{"surrounding spaces are trimmed", "  sp=a.{region}.{domain}  ", "sp", "a.{region}.{domain}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := signer.ParseAlias(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != tc.wantName || a.Template != tc.wantTemplate || a.Service != "operator-defined" {
				t.Errorf("got %+v", a)
			}
		})
	}
}

func TestParseAliasRefuses(t *testing.T) {
	for _, tc := range []struct{ name, spec, want string }{
		{"no equals sign", "genai", "not NAME=TEMPLATE"},
		{"empty name", "=a.{region}.{domain}", "name is empty"},
		{"upper-case name", "GenAI=a.{region}.{domain}", "lower-case"},
		{"underscore in name", "gen_ai=a.{region}.{domain}", "lower-case"},
		{"slash in name", "gen/ai=a.{region}.{domain}", "lower-case"},
		{"name ends in hyphen", "genai-=a.{region}.{domain}", "hyphen"},
		{"name too long", strings.Repeat("a", 64) + "=a.{region}.{domain}", "at most 63"},
		{"empty template", "x=", "template is empty"},
		{"unknown placeholder", "x=a.{realm}.{domain}", "placeholder {realm}"},
		{"placeholder in another case", "x=a.{Region}.{domain}", "placeholder {Region}"},
		{"SDK's own placeholder", "x=a.{region}.{secondLevelDomain}", "placeholder {secondLevelDomain}"},
		{"SDK option syntax", "x=a.{region}.{dualStack?ds.:}oci.{domain}", "placeholder {dualStack?ds.:}"},
		{"unclosed brace", "x=a.{region", "opens no placeholder"},
		{"stray closing brace", "x=a.region}.{domain}", "closes no placeholder"},
		{"scheme", "x=https://a.{region}.{domain}", "without a scheme"},
		{"path", "x=a.{region}.{domain}/20231130", "without a path"},
		{"query", "x=a.{region}.{domain}?x=1", "without a path"},
		{"port", "x=a.{region}.{domain}:443", "without a port"},
		{"user information", "x=user@a.{region}.{domain}", "without user information"},
		{"empty label", "x=a..{region}.{domain}", "empty label"},
		{"leading dot", "x=.a.{region}.{domain}", "empty label"},
		{"trailing dot", "x=a.{region}.{domain}.", "empty label"},
		{"underscore in host", "x=a_b.{region}.{domain}", "letters, digits and hyphens"},
		{"space in host", "x=a b.{region}.{domain}", "letters, digits and hyphens"},
		{"label starts with hyphen", "x=-a.{region}.{domain}", "hyphen"},
		{"label too long", "x=" + strings.Repeat("a", 64) + ".{region}.{domain}", "longer than 63"},
		{"single label", "x=localhost", "not a fully qualified host name"},
		{"IP address", "x=10.0.0.1", "IP address"},
		{"host too long", "x=" + strings.Repeat("abcdefghi.", 25) + "{region}.{domain}", "at most 253"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := signer.ParseAlias(tc.spec)
			if !errors.Is(err, signer.ErrInvalidAlias) {
				t.Fatalf("ParseAlias(%q) = %+v, %v; want ErrInvalidAlias", tc.spec, a, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
