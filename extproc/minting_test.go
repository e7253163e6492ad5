package extproc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// How the list of credential-minting operations is held to oci-go-sdk:
// TestMintingMatchesSDK reads the SDK's client sources from the module
// cache (compiling them would cost the suite minutes), takes every
// operation's method and path template from its
// request.HTTPRequest(http.MethodPost, "/users/{userId}/apiKeys", …) (or
// common.MakeDefaultHTTPRequestWithTaggedStruct) call and the client's
// BasePath, instantiates the template on the host the client sends to, and
// asks credentialMinting: every listed operation is refused under its own
// name, with the SDK's method and template; every other operation of those
// clients, its read-only and delete neighbours among them, is not. An
// operation the SDK gains whose name looks like minting fails the test
// until it is listed or reviewed below.

// mintingClients are the SDK clients whose operations are checked, and the
// host each sends to (identity domains take theirs from the caller).
var mintingClients = []struct {
	pkg, file, host string
}{
	{"identity", "identity/identity_client.go", ""},
	{"identitydomains", "identitydomains/identitydomains_client.go", "idcs-0123456789abcdef0123456789abcdef.identity.oraclecloud.com"},
	{"identitydataplane", "identitydataplane/identitydataplane_dataplane_client.go", ""},
	{"objectstorage", "objectstorage/objectstorage_client.go", ""},
}

// mintingLooking is the shape of an operation name that may mint.
var mintingLooking = regexp.MustCompile(`^(Create|Upload|Generate|Reset|Regenerate|Put|Update|Patch)\w*(ApiKey|AuthToken|SecretKey|Smtp|ClientCredential|DbCredential|Password|Seed|Token|Certificate|Secret|AuthenticationFactor|ScimClient|Preauthenticated)`)

// reviewedNotMinting are SDK operations of minting shape that mint nothing,
// and why.
var reviewedNotMinting = map[string]string{
	"identity.UpdateAuthToken":                             "changes the description only (UpdateAuthTokenDetails)",
	"identity.UpdateSwiftPassword":                         "changes the description only",
	"identity.UpdateSmtpCredential":                        "changes the description only",
	"identity.UpdateCustomerSecretKey":                     "changes the display name only",
	"identitydomains.PatchApiKey":                          "the key is immutable (ApiKey.key mutability: immutable)",
	"identitydomains.PatchMyApiKey":                        "the key is immutable",
	"identitydomains.PatchAuthToken":                       "status and description; the secret is returned only on create",
	"identitydomains.PatchMyAuthToken":                     "status and description",
	"identitydomains.PatchCustomerSecretKey":               "status and display name",
	"identitydomains.PatchMyCustomerSecretKey":             "status and display name",
	"identitydomains.PatchSmtpCredential":                  "status and description",
	"identitydomains.PatchMySmtpCredential":                "status and description",
	"identitydomains.PatchOAuth2ClientCredential":          "status, description and scopes",
	"identitydomains.PatchMyOAuth2ClientCredential":        "status, description and scopes",
	"identitydomains.CreateMyAuthenticationFactorsRemover": "removes factors",
	"identitydomains.CreateAuthenticationFactorsRemover":   "removes factors",
	"identitydomains.PutAuthenticationFactorSetting":       "the domain's factor settings, no factor",
	"identitydomains.CreatePasswordPolicy":                 "a policy, no password",
	"identitydomains.PatchPasswordPolicy":                  "a policy, no password",
	"identitydomains.PutPasswordPolicy":                    "a policy, no password",
}

// authLiterals ties the auth service's operations that no SDK client names
// to the source that uses them: a file (of the SDK, or ocisigner's own for
// the session refresh the OCI CLI and ocisigner send) and the literal in it.
var authLiterals = map[string][2]string{
	"auth.X509Federation":                {"sdk:common/auth/federation_client.go", `"v1/x509"`},
	"auth.OAuth2ScopedFederation":        {"sdk:common/auth/federation_client.go", `"v1/oauth2/scoped"`},
	"auth.ResourcePrincipalSessionToken": {"sdk:common/auth/resource_principals_v1.go", `"/v1/resourcePrincipalSessionToken"`},
	"identitydomains.OAuth2Token":        {"sdk:common/auth/federation_client.go", `"/oauth2/v1/token"`},
	"auth.RefreshSessionToken":           {"../signer/credentials/authclient.go", `"/v1/authentication/refresh"`},
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

// sdkOperation is one operation of an SDK client, as its source has it.
type sdkOperation struct {
	name, method, template string // template with the client's BasePath
}

var hostTemplate = regexp.MustCompile(`"https://([a-z]+\.\{region\}[^"]*)"`)
var dualStack = regexp.MustCompile(`\{dualStack\?[^:}]*:([^}]*)\}`)

// readSDKClient parses a client file: its operations, and the host its
// SetRegion renders for us-ashburn-1 (dual-stack off, as by default).
func readSDKClient(t *testing.T, path string) (ops []sdkOperation, host string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := hostTemplate.FindSubmatch(src); m != nil {
		host = dualStack.ReplaceAllString(string(m[1]), "$1")
		host = strings.NewReplacer("{region}", "us-ashburn-1", "{secondLevelDomain}", "oraclecloud.com").Replace(host)
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	basePath := ""
	ast.Inspect(f, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 {
			if sel, ok := as.Lhs[0].(*ast.SelectorExpr); ok && sel.Sel.Name == "BasePath" {
				if lit, ok := as.Rhs[0].(*ast.BasicLit); ok {
					basePath, _ = strconv.Unquote(lit.Value)
				}
			}
		}
		return true
	})
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil || fd.Body == nil {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			fn, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || fn.Sel.Name != "HTTPRequest" && fn.Sel.Name != "MakeDefaultHTTPRequestWithTaggedStruct" {
				return true
			}
			m, ok1 := call.Args[0].(*ast.SelectorExpr)
			lit, ok2 := call.Args[1].(*ast.BasicLit)
			if !ok1 || !ok2 || !strings.HasPrefix(m.Sel.Name, "Method") {
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			tmpl := p
			if basePath != "" {
				tmpl = "/" + strings.Trim(basePath, "/") + p
			}
			ops = append(ops, sdkOperation{
				name:     strings.ToUpper(fd.Name.Name[:1]) + fd.Name.Name[1:],
				method:   strings.ToUpper(strings.TrimPrefix(m.Sel.Name, "Method")),
				template: tmpl,
			})
			return false
		})
	}
	if len(ops) == 0 {
		t.Fatalf("%s: no operations found; has the SDK's source changed shape?", path)
	}
	return ops, host
}

var placeholder = regexp.MustCompile(`\{[^}/]+\}`)

// instantiate fills a template's placeholders with OCID-like values.
func instantiate(template string) string {
	n := 0
	return placeholder.ReplaceAllStringFunc(template, func(string) string {
		n++
		return "ocid1.test.oc1..aaaa" + strconv.Itoa(n)
	})
}

func TestMintingMatchesSDK(t *testing.T) {
	root := sdkModuleDir(t)
	listed := map[string]mintingOp{}
	for _, m := range mintingOps {
		listed[m.op] = m
	}
	found, seenReviewed := map[string]bool{}, map[string]bool{}
	for _, c := range mintingClients {
		ops, host := readSDKClient(t, filepath.Join(root, c.file))
		if c.host != "" {
			host = c.host
		}
		t.Logf("%s: %d operations, sent to %s", c.pkg, len(ops), host)
		if hostFamilyOf(host) == familyNone {
			t.Fatalf("%s sends to %q, which is no host family of credentialMinting", c.pkg, host)
		}
		for _, op := range ops {
			name := c.pkg + "." + op.name
			got, ok := credentialMinting(op.method, host, instantiate(op.template))
			m, isListed := listed[name]
			switch {
			case isListed:
				found[name] = true
				if m.method != op.method || m.template != op.template {
					t.Errorf("%s: listed as %s %s, the SDK sends %s %s", name, m.method, m.template, op.method, op.template)
				}
				if !ok || got != name {
					t.Errorf("%s %s %s: credentialMinting = %q, %v; want %q", op.method, host, instantiate(op.template), got, ok, name)
				}
			case ok:
				t.Errorf("%s (%s %s) is not listed, yet refused as %q", name, op.method, op.template, got)
			case mintingLooking.MatchString(op.name):
				seenReviewed[name] = true
				if _, reviewed := reviewedNotMinting[name]; !reviewed {
					t.Errorf("%s (%s %s) looks like minting: list it in mintingOps, or say in reviewedNotMinting why it is not", name, op.method, op.template)
				}
			}
		}
	}
	for name, src := range authLiterals {
		path := src[0]
		if rest, ok := strings.CutPrefix(path, "sdk:"); ok {
			path = filepath.Join(root, rest)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), src[1]) {
			t.Errorf("%s: %s no longer holds %s", name, path, src[1])
		}
		if _, ok := listed[name]; !ok {
			t.Errorf("%s is tied to a source but not listed", name)
		}
		found[name] = true
	}
	for name := range reviewedNotMinting {
		if !seenReviewed[name] {
			t.Errorf("reviewedNotMinting holds %s, which is no SDK operation of minting shape (any more)", name)
		}
	}
	for _, m := range mintingOps {
		if !found[m.op] {
			t.Errorf("%s is listed but neither an SDK operation nor tied to a source", m.op)
		}
	}
}

// TestMintingPathReadings: a listed operation is refused however its path
// is written, and what only looks like it is not.
func TestMintingPathReadings(t *testing.T) {
	const (
		iam  = "identity.us-ashburn-1.oci.oraclecloud.com"
		keys = "/20160918/users/ocid1.user.oc1..aaaa/apiKeys"
	)
	for _, c := range []struct {
		name, method, host, target string
		want                       string // "" for not refused
	}{
		{"as the SDK sends it", "POST", iam, keys, "identity.UploadApiKey"},
		{"a trailing slash", "POST", iam, keys + "/", "identity.UploadApiKey"},
		{"doubled slashes", "POST", iam, "//20160918//users//ocid1.user.oc1..aaaa//apiKeys", "identity.UploadApiKey"},
		{"an empty query", "POST", iam, keys + "?", "identity.UploadApiKey"},
		{"a query", "POST", iam, keys + "?opc-retry-token=x", "identity.UploadApiKey"},
		{"a fragment", "POST", iam, keys + "#x", "identity.UploadApiKey"},
		{"another case", "POST", iam, "/20160918/USERS/ocid1.user.oc1..aaaa/APIKEYS", "identity.UploadApiKey"},
		{"a percent-encoded letter", "POST", iam, "/20160918/users/ocid1.user.oc1..aaaa/%61piKeys", "identity.UploadApiKey"},
		{"encoded twice", "POST", iam, "/20160918/users/ocid1.user.oc1..aaaa/%2561piKeys", "identity.UploadApiKey"},
		{"an encoded slash in the user", "POST", iam, "/20160918/users/a%2Fb/apiKeys", "identity.UploadApiKey"},
		{"an encoded slash as a separator", "POST", iam, "/20160918/users%2Fx%2FapiKeys", "identity.UploadApiKey"},
		{"a path parameter", "POST", iam, keys + ";jsessionid=1", "identity.UploadApiKey"},
		{"dot segments", "POST", iam, "/20160918/./users/x/../ocid1.user.oc1..aaaa/apiKeys", "identity.UploadApiKey"},
		{"a backslash", "POST", iam, `/20160918\users\ocid1.user.oc1..aaaa\apiKeys`, "identity.UploadApiKey"},
		{"absolute form", "POST", iam, "https://" + iam + keys, "identity.UploadApiKey"},
		{"a lower-case method", "post", iam, keys, "identity.UploadApiKey"},
		{"the host with a port, in capitals", "POST", "IDENTITY.us-ashburn-1.oci.oraclecloud.com:443", keys, "identity.UploadApiKey"},
		{"the host without .oci", "POST", "identity.us-ashburn-1.oraclecloud.com", keys, "identity.UploadApiKey"},
		{"another realm", "POST", "identity.eu-frankfurt-2.oci.oraclecloud.eu", keys, "identity.UploadApiKey"},

		{"listing the keys", "GET", iam, keys, ""},
		{"deleting a key", "DELETE", iam, keys + "/aa:bb", ""},
		{"a longer last segment", "POST", iam, keys + "X", ""},
		{"a segment more", "POST", iam, keys + "/extra", ""},
		{"a segment less", "POST", iam, "/20160918/users/apiKeys", ""},
		{"another API version", "POST", iam, "/20160917/users/ocid1.user.oc1..aaaa/apiKeys", ""},
		{"the path on Object Storage", "POST", "objectstorage.us-ashburn-1.oraclecloud.com", keys, ""},
		{"a look-alike host outside the realms", "POST", "identity.us-ashburn-1.oci.oraclecloud.com.evil.example", keys, ""},
		{"an IP", "POST", "10.0.0.1", keys, ""},
		{"describing an auth token", "PUT", iam, "/20160918/users/u/authTokens/t", ""},
		{"resetting OAuth client credentials", "PUT", iam, "/20160918/users/u/oauth2ClientCredentials/c", "identity.UpdateOAuthClientCredential"},

		{"a domain's API key", "POST", "idcs-abc123.identity.oraclecloud.com", "/admin/v1/ApiKeys", "identitydomains.CreateApiKey"},
		{"a domain's own API key", "POST", "idcs-abc123.identity.oraclecloud.com:443", "/admin/v1/MyApiKeys/", "identitydomains.CreateMyApiKey"},
		{"searching a domain's API keys", "POST", "idcs-abc123.identity.oraclecloud.com", "/admin/v1/ApiKeys/.search", ""},
		{"a domain's token endpoint", "POST", "idcs-abc123.identity.oraclecloud.com", "/oauth2/v1/token", "identitydomains.OAuth2Token"},
		{"a domain path on IAM", "POST", iam, "/admin/v1/ApiKeys", ""},

		{"x509 federation", "POST", "auth.us-ashburn-1.oraclecloud.com", "/v1/x509", "auth.X509Federation"},
		{"session refresh", "POST", "auth.us-ashburn-1.oraclecloud.com", "/v1/authentication/refresh", "auth.RefreshSessionToken"},
		{"a UPST", "POST", "auth.eu-frankfurt-2.oraclecloud.eu", "/v1/token/upst/actions/GenerateUpst", "identitydataplane.GenerateUserSecurityToken"},
		{"an auth service path no one lists", "POST", "auth.us-ashburn-1.oraclecloud.com", "/v2/something/new", opAuthService},
		{"reading from the auth service", "GET", "auth.us-ashburn-1.oraclecloud.com", "/v1/x509", ""},

		{"a pre-authenticated request", "POST", "objectstorage.us-ashburn-1.oraclecloud.com", "/n/ns/b/bucket/p/", "objectstorage.CreatePreauthenticatedRequest"},
		{"on a namespace's own endpoint", "POST", "ns.objectstorage.us-ashburn-1.oci.customer-oci.com", "/n/ns/b/bucket/p", "objectstorage.CreatePreauthenticatedRequest"},
		{"listing them", "GET", "objectstorage.us-ashburn-1.oraclecloud.com", "/n/ns/b/bucket/p", ""},
		{"an object called p", "PUT", "objectstorage.us-ashburn-1.oraclecloud.com", "/n/ns/b/bucket/o/p", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := credentialMinting(c.method, c.host, c.target)
			if ok != (c.want != "") || got != c.want {
				t.Fatalf("credentialMinting(%q, %q, %q) = %q, %v; want %q", c.method, c.host, c.target, got, ok, c.want)
			}
		})
	}
}
