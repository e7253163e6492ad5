package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// Every command's -h goes to stdout with one line of purpose, its usage,
// only its own flags, two examples and its exit codes; `help NAME` says the
// same; a usage error goes to stderr and points at -h.
func TestHelpForEveryCommand(t *testing.T) {
	own := map[string][]string{ // flags only that command has
		"serve":   {"--listen", "--max-body-bytes", "--profile-header", "--profiles"},
		"probe":   {"--via", "--endpoint", "-v"},
		"token":   {"--all"},
		"sign":    {"-X", "-H", "--data", "--curl"},
		"version": nil,
		"policy":  {"--caller", "--method", "--request-profile"},
		"keys":    nil,
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, nil, c.name, "-h")
			if code != exitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"ocisigner " + c.name + ": " + c.purpose, "usage: " + c.usage, "examples:\n  " + c.examples[0] + "\n  " + c.examples[1], "exit codes:\n  0  success"} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %q:\n%s", want, out)
				}
			}
			for name, flags := range own {
				for _, f := range flags {
					if has := strings.Contains(out, "\n  "+f+"  "); has != (name == c.name) {
						t.Errorf("%s in the help of %s: %v", f, c.name, has)
					}
				}
			}
			if _, same, _ := runCmd(t, nil, "help", c.name); same != out {
				t.Errorf("`help %s` differs from `%s -h`", c.name, c.name)
			}
		})
	}
	code, out, errOut := runCmd(t, nil, "probe", "--no-such-flag")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "no-such-flag") || !strings.Contains(errOut, `"ocisigner probe -h"`) {
		t.Fatalf("usage error: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil); code != exitUsage || !strings.Contains(errOut, "commands:") {
		t.Fatalf("no command: exit %d %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "ocisigner ") || strings.HasPrefix(out, "ocisigner dev (RSA") || !strings.Contains(out, "RSA: ") {
		t.Fatalf("unstamped: exit %d %q: want the build info's version", code, out)
	}
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	if _, out, _ := runCmd(t, nil, "version"); !strings.HasPrefix(out, "ocisigner v1.2.3 (RSA: ") {
		t.Fatalf("stamped: %q", out)
	}
}

// Errors a newcomer meets say what to do.
func TestHints(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		exit  int
		wants []string
	}{
		{"config missing", map[string]string{"OCI_CLI_CONFIG_FILE": filepath.Join(t.TempDir(), "config")}, []string{"token"}, exitConfig,
			[]string{"does not exist", "oci setup config", "oci session authenticate", "--config", "OCI_CONFIG_DIR"}},
		{"network", env, []string{"probe", "--profile", "API", "--endpoint", "http://" + closedPort(t)}, exitNetwork,
			[]string{"hint:", "probe --via"}},
		{"gateway not running", env, []string{"probe", "--profile", "API", "--via", "http://" + closedPort(t)}, exitNetwork,
			[]string{"hint:", "docker compose up gateway"}},
		{"OCI 401", env, []string{"probe", "--profile", "UNREGISTERED", "--endpoint", fx.oci.URL}, exitCredentials,
			[]string{"hint:", "key is not uploaded", "fingerprint", "clock", "signs as api_key"}},
		{"region not in the table", env, []string{"probe", "--profile", "API", "--region", "us-ashburn1", "--endpoint", fx.oci.URL}, exitOK,
			[]string{"warning:", "not one ocisigner knows", "did you mean us-ashburn-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.env, tc.args...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("lacks %q:\n%s%s", w, out, errOut)
				}
			}
		})
	}
	// The clock comes first when OCI's Date shows it is off.
	hint := unauthorizedHint(time.Now().Add(-7*time.Minute).UTC().Format(http.TimeFormat), time.Now(), "api_key")
	if !strings.Contains(hint, "clock is 7m") || !strings.HasPrefix(hint, "OCI refused the signature; usually: this machine's clock") {
		t.Fatalf("skew: %s", hint)
	}
}

// --reveal prints credentials only when asked on the command line.
func TestRevealNeverFromTheEnvironment(t *testing.T) {
	fx := newFixture(t)
	raw := readToken(t, fx, "SESSION")
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCISIGNER_REVEAL": "true"}
	for _, args := range [][]string{{"token", "--profile", "SESSION"}, {"sign", "--profile", "SESSION", "https://" + realmHost + "/n/"}} {
		if code, out, _ := runCmd(t, env, args...); code != exitOK || strings.Contains(out, raw[20:60]) {
			t.Fatalf("%v with OCISIGNER_REVEAL=true: exit %d, token shown: %v", args, code, strings.Contains(out, raw[20:60]))
		}
	}
	if _, out, _ := runCmd(t, nil, "sign", "-h"); !strings.Contains(out, "--reveal  [never from the environment]") {
		t.Fatal("the help does not say --reveal is never from the environment")
	}
}

// `ocisigner sign` shows what the gateway would set and sign, by the same
// code as the service, without sending anything.
func TestSignCommand(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	raw := readToken(t, fx, "SESSION")
	code, out, errOut := runCmd(t, env, "sign", "--profile", "SESSION", "-X", "POST", "-H", "content-type: application/json",
		"--data", `{"a":1}`, "https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances?b=2&a=1")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{"profile:        SESSION", "principal:      security_token", "key id:         ST$eyJ",
		"request:        POST https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances?b=2&a=1",
		"signed headers: date (request-target) host content-length content-type x-content-sha256",
		"  x-content-sha256: " + sha256b64(`{"a":1}`), `signature="…"`, "(request-target): post /20160918/instances?b=2&a=1", "content-length: 7"} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, raw[20:60]) {
		t.Fatal("token shown without --reveal")
	}

	// --reveal --curl: a command that runs, with the whole keyId.
	code, out, _ = runCmd(t, env, "sign", "--profile", "SESSION", "--curl", "--reveal", "https://"+realmHost+"/n/")
	if code != exitOK || !strings.Contains(out, "curl -X GET 'https://"+realmHost+"/n/'") || !strings.Contains(out, `keyId="ST$`+raw+`"`) {
		t.Fatalf("--curl --reveal: exit %d\n%s", code, out)
	}

	// The gateway form resolves as the service resolves it; JSON for scripts.
	code, out, _ = runCmd(t, env, "sign", "--profile", "API", "--json", "http://localhost:10000/genai/openai/v1/models")
	var res signResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitOK {
		t.Fatalf("exit %d %v\n%s", code, err, out)
	}
	if res.URL != "https://inference.generativeai.us-ashburn-1.oci.oraclecloud.com/openai/v1/models" || res.Principal != "api_key" ||
		!strings.HasPrefix(res.KeyID, "…") || res.SigningString == "" {
		t.Fatalf("%+v", res)
	}
	var compartment bool
	for _, f := range res.Set {
		compartment = compartment || f.Name == "opc-compartment-id" && f.Value == "ocid1.tenancy.oc1..test"
	}
	if !compartment {
		t.Fatalf("no compartment set: %+v", res.Set)
	}

	// A host the service refuses is refused here too.
	code, out, _ = runCmd(t, env, "sign", "--profile", "API", "https://example.com/")
	if code != exitFailure || !strings.Contains(out, "refused:        403 "+extproc.CodeHostNotAllowed) {
		t.Fatalf("refused: exit %d\n%s", code, out)
	}
}

func sha256b64(s string) string {
	d := signer.DigestOf([]byte(s))
	return base64.StdEncoding.EncodeToString(d.SHA256[:])
}

// The seed setup: [DEFAULT] is an API key with a user and `oci session
// authenticate` appended [TEST123]: token, probe and a signed request all
// take TEST123 for the session profile it is.
func TestSessionProfileBelowAnAPIKeyDefaultThroughTheCommands(t *testing.T) {
	f := signertest.NewFolder(t)
	oci := signertest.NewServer(t)
	is := signertest.NewIssuer(t)
	oci.TrustIssuer(is)
	apiKey, sessKey := signertest.Key(t, 1), signertest.Key(t, 2)
	f.Write("oci_api_key.pem", signertest.EncodeKey(t, apiKey, signertest.PKCS8, ""))
	f.AppendConfig("DEFAULT", "user", "ocid1.user.oc1..default", "fingerprint", signer.Fingerprint(&apiKey.PublicKey),
		"key_file", f.WrittenPath("oci_api_key.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", "us-ashburn-1")
	tok := is.Mint(t, &sessKey.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..session"})
	f.Write("sessions/TEST123/oci_api_key.pem", signertest.EncodeKey(t, sessKey, signertest.PKCS1, ""))
	f.Write("sessions/TEST123/token", []byte(tok+"\n"))
	f.AppendConfig("TEST123", "fingerprint", signer.Fingerprint(&sessKey.PublicKey), "key_file", f.WrittenPath("sessions/TEST123/oci_api_key.pem"),
		"tenancy", "ocid1.tenancy.oc1..test", "region", "us-phoenix-1", "security_token_file", f.WrittenPath("sessions/TEST123/token"))
	env := map[string]string{"OCI_CLI_CONFIG_FILE": f.ConfigPath(), "OCI_CLI_PROFILE": "TEST123"}

	if code, out, _ := runCmd(t, env, "token"); code != exitOK || !strings.Contains(out, "principal:    security_token") || !strings.Contains(out, "subject:      ocid1.user.oc1..session") {
		t.Fatalf("token: exit %d\n%s", code, out)
	}
	if code, out, _ := runCmd(t, env, "probe", "--endpoint", oci.URL); code != exitOK || !strings.Contains(out, "principal:      security_token") {
		t.Fatalf("probe: exit %d\n%s", code, out)
	}
	if rec := oci.Requests()[0]; !rec.OK || rec.KeyID != "ST$"+tok {
		t.Fatalf("the probe signed as %s: %s", rec.KeyID, rec.Reason)
	}
}

// A session token given as the JWT, its JSON, or the environment's value:
// `token` shows its metadata in each form.
func TestTokenMetadataForEachForm(t *testing.T) {
	key := signertest.Key(t, 2)
	tok := signertest.NewIssuer(t).Mint(t, &key.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..forms"})
	for _, tc := range []struct {
		name  string
		file  string // the token file's content; "" for none
		env   map[string]string
		extra []string
	}{
		{"token file with the JWT", tok + "\n", nil, nil},
		{"token file with JSON", `{"token":"` + tok + `"}`, nil, nil},
		{"OCISIGNER_SECURITY_TOKEN", "", map[string]string{"OCISIGNER_SECURITY_TOKEN": tok}, nil},
		{"OCISIGNER_SECURITY_TOKEN as JSON, passphrase from the environment", "", map[string]string{"OCISIGNER_SECURITY_TOKEN": `{"token": "` + tok + `"}`, "OCISIGNER_PASS_PHRASE": "pw"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := signertest.NewFolder(t)
			pass := "pw"
			if tc.env["OCISIGNER_PASS_PHRASE"] != "" {
				pass = "" // only the environment has it
			}
			f.Write("key.pem", signertest.EncodeKey(t, key, signertest.EncryptedPKCS8, "pw"))
			kv := []string{"key_file", f.WrittenPath("key.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", "us-ashburn-1"}
			if pass != "" {
				kv = append(kv, "pass_phrase", pass)
			}
			if tc.file != "" {
				f.Write("token", []byte(tc.file))
				kv = append(kv, "security_token_file", f.WrittenPath("token"))
			}
			f.AppendConfig("DEFAULT", kv...)
			env := map[string]string{"OCI_CLI_CONFIG_FILE": f.ConfigPath()}
			for k, v := range tc.env {
				env[k] = v
			}
			code, out, errOut := runCmd(t, env, "token")
			if code != exitOK {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			for _, w := range []string{"principal:    security_token", "subject:      ocid1.user.oc1..forms", "created:", "expires:"} {
				if !strings.Contains(out, w) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// The start-up line names each profile with its principal, masked keyId
// and expiry, or why it cannot sign.
func TestServeStartupLineNamesEveryProfile(t *testing.T) {
	fx := newFixture(t)
	var logs signertest.LogBuffer
	startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}, serveOptions{}, &logs)
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "ocisigner serving") {
			line = l
		}
	}
	for _, w := range []string{"API: api_key …", "SESSION: security_token ST$eyJ", "expires 20", "EXPIRED: not usable (token expired)", "UNREGISTERED: api_key"} {
		if !strings.Contains(line, w) {
			t.Errorf("start-up line lacks %q:\n%s", w, line)
		}
	}
	if strings.Contains(line, readToken(t, fx, "SESSION")[20:60]) {
		t.Fatal("the start-up line holds a whole token")
	}
}

// probe -v shows what it signed with, masked, and OCI's request id.
func TestProbeVerbose(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	raw := readToken(t, fx, "SESSION")
	code, out, _ := runCmd(t, env, "probe", "--profile", "SESSION", "-v", "--endpoint", fx.oci.URL)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, w := range []string{"signed:         date: ", `signed:         authorization: Signature version="1",headers="date (request-target) host",keyId="ST$`, `signature="…"`, "opc-request-id: "} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, raw[20:60]) {
		t.Fatal("probe -v shows the token")
	}
}

// `sign` runs as the config's owner, with no gateway in between: a local
// error is shown whole (paths and profiles), as `token` shows it.
func TestSignShowsItsOwnErrors(t *testing.T) {
	fx := newFixture(t)
	if err := os.Remove(fx.folder.Path("keys/api.pem")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}, "sign", "--profile", "API", "https://"+realmHost+"/n/")
	if code != exitConfig || !strings.Contains(out, fx.folder.Path("keys/api.pem")) || strings.Contains(out, "gateway's log") {
		t.Fatalf("exit %d: want the local error with its path:\n%s%s", code, out, errOut)
	}
}

// `sign` takes a curl command line's flags, in curl's order and spelling,
// and --curl prints only a command a shell can run.
func TestSignIsCurlShaped(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte("{\"a\":\n1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances"
	for _, args := range [][]string{
		{url, "-d", "@" + body, "-H", "content-type: application/json", "--curl"},
		{"--curl", url, "--data", "@" + body, "--header", "Content-Type: application/json"},
		{"-XPOST", "-d@" + body, "-H", "content-type: application/json", url, "--curl"},
		{"--request", "POST", url, "--data-raw", `{"a":1}`, "-Hcontent-type: application/json", "--curl"},
	} {
		code, out, errOut := runCmd(t, env, append([]string{"sign"}, args...)...)
		if code != exitOK {
			t.Fatalf("%q: exit %d\n%s%s", args, code, out, errOut)
		}
		// Only the command: one curl invocation, a POST (a body makes one,
		// as in curl), with the body as it was signed (-d @file drops the
		// line breaks, as curl does).
		if !strings.HasPrefix(out, "curl -X POST '"+url+"'") || strings.Count(out, "curl ") != 1 || strings.Contains(out, "profile:") ||
			!strings.Contains(out, "x-content-sha256: "+sha256b64(`{"a":1}`)) || !strings.Contains(out, `--data-binary '{"a":1}'`) {
			t.Errorf("%q: stdout is not the command alone:\n%s", args, out)
		}
		if !strings.Contains(errOut, "--reveal") {
			t.Errorf("%q: stderr does not say the command is masked: %q", args, errOut)
		}
	}
	// JSON keys are snake_case throughout.
	_, out, _ := runCmd(t, env, "sign", "--json", "https://"+realmHost+"/n/")
	if !strings.Contains(out, `"name": "date"`) || strings.Contains(out, `"Name"`) || strings.Contains(out, `"Value"`) {
		t.Errorf("JSON keys:\n%s", out)
	}
}

// The OCI CLI's spellings work: --config-file, --auth (and OCI_CLI_AUTH),
// OCI_CLI_REGION, and --region changes the region aliases resolve with.
func TestOCICLIDialect(t *testing.T) {
	fx := newFixture(t)
	// A session profile below an API-key DEFAULT that names a user: the
	// config alone could be read either way; --auth says which.
	sk := signertest.Key(t, 2)
	tok := fx.issuer.Mint(t, &sk.PublicKey, signertest.TokenOptions{})
	fx.folder.SessionProfile("BOTH", sk, tok, "user", "ocid1.user.oc1..both")
	cfg := fx.folder.ConfigPath()
	alias := "http://localhost:10000/objectstorage/n/"
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		exit  int
		wants []string
	}{
		{"--config-file", nil, []string{"token", "--config-file", cfg, "--profile", "API"}, exitOK, []string{"principal:    api_key"}},
		{"--auth security_token", map[string]string{"OCI_CLI_CONFIG_FILE": cfg}, []string{"token", "--profile", "BOTH", "--auth", "security_token"}, exitOK, []string{"principal:    security_token"}},
		{"--auth api_key", map[string]string{"OCI_CLI_CONFIG_FILE": cfg}, []string{"token", "--profile", "BOTH", "--auth", "api_key"}, exitOK, []string{"principal:    api_key"}},
		{"OCI_CLI_AUTH", map[string]string{"OCI_CLI_CONFIG_FILE": cfg, "OCI_CLI_AUTH": "api_key"}, []string{"token", "--profile", "BOTH"}, exitOK, []string{"principal:    api_key"}},
		{"--auth instance_principal", map[string]string{"OCI_CLI_CONFIG_FILE": cfg, "OCISIGNER_METADATA_URL": "http://" + closedPort(t)}, []string{"token", "--auth", "instance_principal"}, exitNetwork, []string{"instance"}},
		{"--auth unknown", map[string]string{"OCI_CLI_CONFIG_FILE": cfg}, []string{"token", "--auth", "instance_obo_user"}, exitUsage, []string{"--auth", "not supported"}},
		{"--auth and --principal disagree", map[string]string{"OCI_CLI_CONFIG_FILE": cfg}, []string{"token", "--auth", "resource_principal", "--principal", "instance"}, exitUsage, []string{"disagree"}},
		{"OCI_CLI_REGION", map[string]string{"OCI_CLI_CONFIG_FILE": cfg, "OCI_CLI_REGION": "eu-frankfurt-2"}, []string{"sign", "--profile", "API", alias}, exitOK,
			[]string{"https://objectstorage.eu-frankfurt-2.oraclecloud.eu/n/"}},
		{"--region", map[string]string{"OCI_CLI_CONFIG_FILE": cfg, "OCI_CLI_REGION": "eu-frankfurt-2"}, []string{"sign", "--profile", "API", "--region", "phx", alias}, exitOK,
			[]string{"https://objectstorage.us-phoenix-1.oraclecloud.com/n/"}},
		{"OCI_CLI_REGION not a region", map[string]string{"OCI_CLI_CONFIG_FILE": cfg, "OCI_CLI_REGION": "x@127.0.0.1:8443/"}, []string{"sign", "--profile", "API", alias}, exitUsage,
			[]string{"OCI_CLI_REGION", "invalid region"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.env, tc.args...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("lacks %q:\n%s%s", w, out, errOut)
				}
			}
		})
	}
}

// Every command that resolves a region warns about one ocisigner does not
// know (a typo signs for a host that does not exist).
func TestRegionTypoWarnsInEveryCommand(t *testing.T) {
	fx := newFixture(t)
	k := signertest.Key(t, 1)
	fx.folder.APIKeyProfile("TYPO", k, "keys/typo.pem", signertest.PKCS1, "", "region", "us-chicgao-1")
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "TYPO"}
	for _, args := range [][]string{
		{"sign", "http://localhost:10000/genai/openai/v1/models"},
		{"token"},
		{"probe", "--endpoint", fx.oci.URL},
	} {
		_, out, errOut := runCmd(t, env, args...)
		if !strings.Contains(out+errOut, `region "us-chicgao-1" is not one ocisigner knows`) || !strings.Contains(out+errOut, "did you mean us-chicago-1") {
			t.Errorf("%v: no warning:\n%s%s", args, out, errOut)
		}
	}
}

// Hints point the right way.
func TestHintsPointTheRightWay(t *testing.T) {
	fx := newFixture(t)
	pub := signertest.Key(t, 1)
	der, err := x509.MarshalPKIXPublicKey(&pub.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	fx.folder.Write("keys/public.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	fx.folder.AppendConfig("PUB", "user", "ocid1.user.oc1..pub", "fingerprint", signer.Fingerprint(&pub.PublicKey),
		"key_file", fx.folder.WrittenPath("keys/public.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", "us-ashburn-1")
	sk := signertest.Key(t, 2)
	fx.folder.SessionProfile("EMPTY", sk, "")
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		exit  int
		wants []string
	}{
		{"a public key as key_file", env, []string{"token", "--profile", "PUB"}, exitConfig, []string{"public key", "oci_api_key_public.pem"}},
		{"a folder as --config", nil, []string{"token", "--config", fx.folder.Dir}, exitConfig, []string{"is a folder", filepath.Join(fx.folder.Dir, "config")}},
		{"a profile in the wrong case", env, []string{"token", "--profile", "session"}, exitConfig, []string{"did you mean SESSION?"}},
		{"an empty token file", env, []string{"token", "--profile", "EMPTY"}, exitConfig, []string{"oci session authenticate --profile-name EMPTY"}},
		{"a duration without its unit", env, []string{"probe", "--timeout", "1"}, exitUsage, []string{"a duration", "15s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.env, tc.args...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("lacks %q:\n%s%s", w, out, errOut)
				}
			}
			if strings.Contains(out+errOut, "oci setup config") {
				t.Errorf("tells a user whose config exists to create one:\n%s%s", out, errOut)
			}
		})
	}
}

// A one-word --allow-host is reached in the gateway form by that word.
func TestOneWordAllowedHostInTheGatewayForm(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	code, out, errOut := runCmd(t, env, "sign", "--allow-host", "myhost:8443", "http://localhost:10000/myhost:8443/n/")
	if code != exitOK || !strings.Contains(out, "request:        GET https://myhost:8443/n/") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, env, "sign", "--allow-host", "myhost", "http://localhost:10000/myhost/n/")
	if code != exitOK || !strings.Contains(out, "request:        GET https://myhost/n/") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if code, out, _ := runCmd(t, env, "sign", "http://localhost:10000/myhost/n/"); code == exitOK {
		t.Fatalf("a one-word host not allowed was signed:\n%s", out)
	}
}
