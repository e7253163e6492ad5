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
	"sync"
	"testing"

	"github.com/oracle/oci-go-sdk/v65/audit"
	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/generativeai"
	"github.com/oracle/oci-go-sdk/v65/generativeaiagentruntime"
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
// then builds real clients for some of them, one per shape of SetRegion the
// SDK has (plain EndpointForTemplate; the dotted-region form with a literal
// template; the dotted-region form with a per-realm template method), and
// checks the host a request would go to, which shows that reading the source
// gives what the clients do; for the Generative AI aliases with a path
// prefix, it checks the whole target too, BasePath included.

// sdkClient is an oci-go-sdk client: its file relative to the module root,
// and its type.
type sdkClient struct{ file, typ string }

var (
	genaiInference = sdkClient{"generativeaiinference/generativeaiinference_client.go", "GenerativeAiInferenceClient"}
	genaiControl   = sdkClient{"generativeai/generativeai_client.go", "GenerativeAiClient"}
)

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
	"database":      {{"database/database_client.go", "DatabaseClient"}},
	"functions":     {{"functions/functions_functionsmanagement_client.go", "FunctionsManagementClient"}},
	"genai":         {genaiInference},
	"genai-actions": {genaiInference},
	"genai-agent":   {{"generativeaiagentruntime/generativeaiagentruntime_client.go", "GenerativeAiAgentRuntimeClient"}},
	"genai-control": {genaiControl},
	"genai-openai":  {genaiInference},
	"generativeai":  {genaiControl},
	"identity":      {{"identity/identity_client.go", "IdentityClient"}},
	"kms":           {{"keymanagement/keymanagement_kmsvault_client.go", "KmsVaultClient"}},
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

// sdkFiles holds the SDK sources parsed so far: several aliases share a
// client, and the large clients take a while to parse under -race.
var sdkFiles = struct {
	sync.Mutex
	m map[string]*ast.File
}{m: map[string]*ast.File{}}

func parseSDKFile(t *testing.T, root, file string) *ast.File {
	t.Helper()
	path := filepath.Join(root, file)
	sdkFiles.Lock()
	defer sdkFiles.Unlock()
	if f, ok := sdkFiles.m[path]; ok {
		return f
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	sdkFiles.m[path] = f
	return f
}

// readSetRegion parses c's SetRegion in the SDK source. A template method
// (Object Storage's getEndpointTemplatePerRealm) is followed to its final
// return, the template used unless per-realm templates are switched on.
func readSetRegion(t *testing.T, root string, c sdkClient) sdkSetRegion {
	t.Helper()
	f := parseSDKFile(t, root, c.file)
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

// aliasPrefixes holds every built-in path prefix to where it comes from,
// segment by segment: the version is the SDK client's BasePath and a segment
// its own operations start with is one of theirs, both read from the SDK
// source; what the SDK has no operation for is OCI's, from the source cited.
var aliasPrefixes = map[string]struct {
	client   sdkClient
	basePath bool   // the prefix starts with the client's BasePath
	opsSeg   string // then a first segment of the client's operation paths
	oci      string // then this, which the SDK does not have
}{
	// oci-openai 0.x (oracle-samples/oci-openai, src/oci_openai/oci_openai.py,
	// _build_service_url): base_url = service_endpoint + "/20231130/actions/v1";
	// the SDK's native inference operations are /actions/chat and the like.
	"genai-actions": {genaiInference, true, "actions", ""},
	// oci-genai-auth-python, examples/agenthub/openai/common.py:
	// AGENTHUB_OPENAI_CP_URL = "https://generativeai.{REGION}.oci.oraclecloud.com/20231130/openai/v1".
	"genai-control": {genaiControl, true, "", "/openai"},
	// oci-genai-auth-python, src/oci_genai_auth/openai/oci_openai.py,
	// _build_base_url: service endpoint + "/openai/v1" (MIGRATION.md: the
	// /openai/v1 endpoint); versionless, so no BasePath.
	"genai-openai": {genaiInference, false, "", "/openai"},
}

// readBasePathAndOps reads, from an SDK client's source, the BasePath its
// constructor sets and the first path segment of every operation it sends.
func readBasePathAndOps(t *testing.T, root string, c sdkClient) (basePath string, opsSegs map[string]bool) {
	t.Helper()
	f := parseSDKFile(t, root, c.file)
	opsSegs = map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if sel, ok := n.Lhs[0].(*ast.SelectorExpr); ok && sel.Sel.Name == "BasePath" && len(n.Rhs) == 1 {
				if lit, ok := n.Rhs[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					basePath, _ = strconv.Unquote(lit.Value)
				}
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "HTTPRequest" && len(n.Args) > 1 {
				if lit, ok := n.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					p, _ := strconv.Unquote(lit.Value)
					seg, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
					opsSegs[seg] = true
				}
			}
		}
		return true
	})
	if basePath == "" || len(opsSegs) == 0 {
		t.Fatalf("%s: no BasePath (%q) or no operations (%d) in the source", c.file, basePath, len(opsSegs))
	}
	return basePath, opsSegs
}

func TestAliasPrefixesMatchSDKSource(t *testing.T) {
	root := sdkModuleDir(t)
	for _, a := range signer.Aliases() {
		from, ok := aliasPrefixes[a.Name]
		if !ok {
			if a.Prefix != "" {
				t.Errorf("alias %s has path prefix %s, which the test does not hold to any source", a.Name, a.Prefix)
			}
			continue
		}
		basePath, ops := readBasePathAndOps(t, root, from.client)
		want := ""
		if from.basePath {
			want += "/" + basePath
		}
		if from.opsSeg != "" {
			if !ops[from.opsSeg] {
				t.Errorf("alias %s: %s sends no operation under /%s", a.Name, from.client.typ, from.opsSeg)
			}
			want += "/" + from.opsSeg
		}
		want += from.oci
		if a.Prefix != want {
			t.Errorf("alias %s: prefix %q, but %s's source gives %q", a.Name, a.Prefix, from.client.typ, want)
		}
	}
	for name := range aliasPrefixes {
		if a, ok := signer.LookupAlias(name); !ok || a.Prefix == "" {
			t.Errorf("the test checks the prefix of alias %s, which the table does not have", name)
		}
	}
}

// captureHost is an HTTP dispatcher that records the host and path a
// client sends to and answers 200 without any network.
type captureHost struct{ host, path string }

func (c *captureHost) Do(req *http.Request) (*http.Response, error) {
	c.host, c.path = req.URL.Host, req.URL.EscapedPath()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

func TestAliasesMatchSDKClients(t *testing.T) {
	sdkDefaults(t)
	key := signertest.Key(t, 0)
	provider := common.NewRawConfigurationProvider("ocid1.tenancy.oc1..test", "ocid1.user.oc1..test", "us-ashburn-1",
		signer.Fingerprint(&key.PublicKey), string(signertest.EncodeKey(t, key, signertest.PKCS1, "")), nil)
	genaiInferenceClient := func() (*common.BaseClient, func(string)) {
		c, err := generativeaiinference.NewGenerativeAiInferenceClientWithConfigurationProvider(provider)
		if err != nil {
			t.Fatal(err)
		}
		return &c.BaseClient, c.SetRegion
	}
	genaiControlClient := func() (*common.BaseClient, func(string)) {
		c, err := generativeai.NewGenerativeAiClientWithConfigurationProvider(provider)
		if err != nil {
			t.Fatal(err)
		}
		return &c.BaseClient, c.SetRegion
	}
	// For an alias with a path prefix, a request the SDK client sends to
	// sdk (its BasePath is put before it) must go where the alias sends rest.
	paths := map[string]struct{ sdk, rest string }{
		"genai-actions": {"/actions/v1/chat/completions", "/v1/chat/completions"},
		"genai-control": {"/openai/v1/vector_stores", "/v1/vector_stores"},
	}
	newClient := map[string]func() (*common.BaseClient, func(string)){
		"audit": func() (*common.BaseClient, func(string)) {
			c, err := audit.NewAuditClientWithConfigurationProvider(provider)
			if err != nil {
				t.Fatal(err)
			}
			return &c.BaseClient, c.SetRegion
		},
		"genai":         genaiInferenceClient,
		"genai-actions": genaiInferenceClient,
		"genai-openai":  genaiInferenceClient,
		"genai-control": genaiControlClient,
		"generativeai":  genaiControlClient,
		"genai-agent": func() (*common.BaseClient, func(string)) {
			c, err := generativeaiagentruntime.NewGenerativeAiAgentRuntimeClientWithConfigurationProvider(provider)
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
	for name := range paths {
		if _, ok := newClient[name]; !ok {
			t.Fatalf("path check for %s without a client", name)
		}
	}
	// Every Generative AI alias (and every alias with a path prefix) is
	// held to its SDK client here, in each realm of aliasRegions.
	for _, a := range signer.Aliases() {
		if _, ok := newClient[a.Name]; !ok && (strings.HasPrefix(a.Name, "genai") || strings.HasPrefix(a.Name, "generativeai") || a.Prefix != "") {
			t.Errorf("alias %s is not compared with an SDK client", a.Name)
		}
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
			sdkPath, wantPath := "/", ""
			if p, ok := paths[name]; ok {
				sdkPath, wantPath = p.sdk, a.Target(p.rest)
			}
			req, err := http.NewRequest(http.MethodGet, sdkPath, nil)
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
			if wantPath != "" && capture.path != wantPath {
				t.Errorf("alias %s in %s: target %s, but the SDK client sends %s", name, region, wantPath, capture.path)
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
		parsed, err := signer.ParseAlias(a.String())
		if err != nil || parsed.Name != a.Name || parsed.Template != a.Template || parsed.Prefix != a.Prefix {
			t.Errorf("built-in %s does not parse as itself: %+v, %v", a, parsed, err)
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

func TestAliasTarget(t *testing.T) {
	// What existing users of genai rely on: the host, and their own path.
	genai, _ := signer.LookupAlias("genai")
	if genai.Prefix != "" || genai.Template != "inference.generativeai.{region}.oci.{domain}" {
		t.Fatalf("genai changed: %+v", genai)
	}
	rests := []string{"/openai/v1/chat/completions", "/20231130/actions/chat", "/a%2Fb//c?b=2&a=1", "/"}
	for _, a := range signer.Aliases() {
		if a.Prefix != "" {
			continue
		}
		for _, rest := range rests {
			if got := a.Target(rest); got != rest {
				t.Errorf("alias %s without prefix: Target(%q) = %q", a.Name, rest, got)
			}
		}
	}
	for _, tc := range []struct{ alias, rest, want string }{
		{"genai-openai", "/v1/responses", "/openai/v1/responses"},
		{"genai-actions", "/v1/chat/completions", "/20231130/actions/v1/chat/completions"},
		{"genai-control", "/v1/vector_stores?limit=2&after=vs_1", "/20231130/openai/v1/vector_stores?limit=2&after=vs_1"},
		{"genai-control", "/v1/a%2Fb//c", "/20231130/openai/v1/a%2Fb//c"},
		{"genai-actions", "/", "/20231130/actions/"},
		{"genai-actions", "", "/20231130/actions/"},
		{"genai-actions", "?x=1", "/20231130/actions/?x=1"},
		{"genai-actions", "v1", "/20231130/actions/v1"},
	} {
		a, ok := signer.LookupAlias(tc.alias)
		if !ok {
			t.Fatalf("no alias %s", tc.alias)
		}
		if got := a.Target(tc.rest); got != tc.want {
			t.Errorf("%s.Target(%q) = %q, want %q", tc.alias, tc.rest, got, tc.want)
		}
	}
	// Which base URL is which, as a reader of the table sees it.
	for _, tc := range []struct{ alias, region, want string }{
		{"genai-openai", "us-chicago-1", "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1"},
		{"genai-actions", "eu-frankfurt-2", "https://inference.generativeai.eu-frankfurt-2.oci.oraclecloud.eu/20231130/actions/v1"},
		{"genai-control", "uk-gov-london-1", "https://generativeai.uk-gov-london-1.oci.oraclegovcloud.uk/20231130/openai/v1"},
	} {
		a, _ := signer.LookupAlias(tc.alias)
		if got := "https://" + aliasHost(t, a, tc.region) + strings.TrimSuffix(a.Target("/v1"), "/"); got != tc.want {
			t.Errorf("%s/v1 in %s = %s, want %s", tc.alias, tc.region, got, tc.want)
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
		wantPrefix   string
	}{
		{"built-in shape", "myai=inference.generativeai.{region}.oci.{domain}", "myai", "inference.generativeai.{region}.oci.{domain}", ""},
		{"digits and hyphens", "genai-2=inference-2.generativeai.{region}.oci.{domain}", "genai-2", "inference-2.generativeai.{region}.oci.{domain}", ""},
		{"placeholders inside labels", "x=svc-{region}.{domain}", "x", "svc-{region}.{domain}", ""},
		{"no placeholders", "fixed=signer-test.oraclecloud.com", "fixed", "signer-test.oraclecloud.com", ""},
		{"upper-case template is folded", "up=Inference.GenerativeAI.{region}.oci.{domain}", "up", "inference.generativeai.{region}.oci.{domain}", ""},
		{"surrounding spaces are trimmed", "  sp=a.{region}.{domain}  ", "sp", "a.{region}.{domain}", ""},
		{"one-segment prefix", "v=a.{region}.{domain}/20231130", "v", "a.{region}.{domain}", "/20231130"},
		{"prefix kept in its case", "act=Inference.GenerativeAI.{region}.oci.{domain}/20231130/Actions", "act", "inference.generativeai.{region}.oci.{domain}", "/20231130/Actions"},
		{"prefix with dots and underscores", "p=a.{region}.{domain}/v1.2/x_y-z", "p", "a.{region}.{domain}", "/v1.2/x_y-z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := signer.ParseAlias(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != tc.wantName || a.Template != tc.wantTemplate || a.Prefix != tc.wantPrefix || a.Service != "operator-defined" {
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
		{"query", "x=a.{region}.{domain}?x=1", "without a query"},
		{"fragment", "x=a.{region}.{domain}#f", "without a query"},
		{"scheme with a path", "x=https://a.{region}.{domain}/20231130", "without a scheme"},
		{"port before a prefix", "x=a.{region}.{domain}:443/20231130", "without a port"},
		{"no host before a prefix", "x=/20231130", "template is empty"},
		{"prefix is a lone slash", "x=a.{region}.{domain}/", "empty segment"},
		{"prefix ends in a slash", "x=a.{region}.{domain}/20231130/", "empty segment"},
		{"prefix with two slashes", "x=a.{region}.{domain}/20231130//actions", "empty segment"},
		{"prefix dot segment", "x=a.{region}.{domain}/20231130/.", `"." segment`},
		{"prefix dot-dot segment", "x=a.{region}.{domain}/../actions", `".." segment`},
		{"prefix percent-encoded", "x=a.{region}.{domain}/a%2Fb", `not "%"`},
		{"prefix query", "x=a.{region}.{domain}/a?b=1", "without a query"},
		{"prefix matrix parameter", "x=a.{region}.{domain}/a;b=1", `not ";"`},
		{"prefix colon", "x=a.{region}.{domain}/a:b", `not ":"`},
		{"prefix user information", "x=a.{region}.{domain}/a@b", `not "@"`},
		{"prefix space", "x=a.{region}.{domain}/a b", "byte 0x20"},
		{"prefix control byte", "x=a.{region}.{domain}/a\x01b", "byte 0x01"},
		{"prefix non-ASCII", "x=a.{region}.{domain}/caf\u00e9", "byte 0xc3"},
		{"prefix placeholder", "x=a.{region}.{domain}/{region}", "belong in the host"},
		{"prefix segment too long", "x=a.{region}.{domain}/" + strings.Repeat("a", 64), "longer than 63"},
		{"prefix too many segments", "x=a.{region}.{domain}" + strings.Repeat("/a", 9), "at most 8"},
		{"prefix too long", "x=a.{region}.{domain}" + strings.Repeat("/abcdefghijklmnop", 9), "at most 128"},
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
