package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
)

// signResult is what `ocisigner sign` prints. The JSON form is stable.
type signResult struct {
	Profile       string         `json:"profile"`
	Principal     string         `json:"principal,omitempty"`
	KeyID         string         `json:"key_id,omitempty"` // masked unless --reveal
	Method        string         `json:"method"`
	URL           string         `json:"url"` // where the request goes: https://<host><target>
	SignedHeaders string         `json:"signed_headers,omitempty"`
	Set           []signer.Field `json:"set_headers,omitempty"`
	Remove        []string       `json:"remove_headers,omitempty"`
	SigningString string         `json:"signing_string,omitempty"`
	Curl          string         `json:"curl,omitempty"`
	Refused       *refusedResult `json:"refused,omitempty"`
}

type refusedResult struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// headerFlags is -H 'name: value', repeatable.
type headerFlags []signer.Field

func (h *headerFlags) String() string { return fmt.Sprint(*h) }
func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q is not 'name: value'", v)
	}
	*h = append(*h, signer.Field{Name: strings.ToLower(strings.TrimSpace(name)), Value: strings.TrimSpace(value)})
	return nil
}

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	var (
		cf      credentialFlags
		so      serveOptions
		method  string
		headers headerFlags
		data    string
		reveal  bool
		curl    bool
		asJSON  bool
	)
	cf.register(fs)
	fs.StringVar(&method, "X", "GET", "the request method")
	fs.Var(&headers, "H", "a request header, 'name: value'; repeatable")
	fs.StringVar(&data, "data", "", "the request body: text, @file, or @- for standard input")
	fs.BoolVar(&reveal, "reveal", false, "print the keyId and signature whole (they are credentials for five minutes: keep them out of logs and tickets)")
	fs.BoolVar(&curl, "curl", false, "also print the request as a curl command (runnable with --reveal)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.Var(&so.allowHosts, "allow-host", "also sign for hosts matching this pattern, as serve does; repeatable")
	fs.Var(&so.aliases, "alias", "add or replace a service alias, as serve does: NAME=TEMPLATE; repeatable")
	fs.StringVar(&so.genaiCompart, "genai-compartment", "", "compartment for Generative AI requests that name none, as serve does")
	if exit, ok := parseCommand(fs, args, getenv, stdout, stderr); !ok {
		return exit
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "ocisigner sign: give one URL, e.g. https://objectstorage.us-ashburn-1.oraclecloud.com/n/ or http://localhost:10000/genai/openai/v1/models")
		return exitUsage
	}
	authority, target, err := splitURL(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return exitUsage
	}
	var body []byte
	switch {
	case data == "@-":
		body, err = io.ReadAll(os.Stdin)
	case strings.HasPrefix(data, "@"):
		body, err = os.ReadFile(data[1:])
	default:
		body = []byte(data)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign: --data:", err)
		return exitUsage
	}
	so.profileHeader = extproc.DefaultProfileHeader
	cfg, err := so.extprocConfig()
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return exitUsage
	}
	store, err := cf.open(getenv, discardLogger())
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return credentialExit(err)
	}
	defer store.Close()
	cfg.Credentials, cfg.DefaultProfile = store, cf.profileName(getenv)
	srv, err := extproc.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return exitFailure
	}
	p := srv.Preview(ctx, extproc.PreviewRequest{Method: method, Authority: authority, Path: target, Header: headers, Body: body})
	res := signResult{Profile: p.Profile, Principal: string(p.Kind), KeyID: p.KeyID, Method: method, URL: "https://" + p.Authority + p.Path, Remove: p.Remove}
	exit := exitOK
	if r := p.Refused; r != nil {
		res.Refused = &refusedResult{r.Status, r.Code, r.Message}
		exit = refusalExit(r.Code)
	}
	if s := p.Signed; s != nil && p.Refused == nil {
		res.SignedHeaders, res.SigningString = s.SignedHeaders, signer.MaskSigningString(s.SigningString)
		for _, f := range p.Set {
			switch {
			case strings.HasPrefix(f.Name, ":"):
				continue // where the request goes: the URL says it
			case f.Name == signer.HeaderAuthorization && !reveal:
				f.Value = maskAuthorization(f.Value)
			case f.Name == signer.HeaderOBOToken && !reveal:
				f.Value = signer.MaskSecret(f.Value)
			}
			res.Set = append(res.Set, f)
		}
		if reveal {
			res.KeyID = between(s.Get(signer.HeaderAuthorization), `keyId="`, `"`)
			res.SigningString = s.SigningString
		}
		if curl {
			res.Curl = curlCommand(method, res.URL, headers, res.Set, p.Remove, data, reveal)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return exit
	}
	printSign(stdout, res, reveal)
	return exit
}

// splitURL takes a URL apart without re-encoding anything: the target is
// signed exactly as it will be sent.
func splitURL(raw string) (authority, target string, err error) {
	rest, ok := strings.CutPrefix(raw, "https://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "http://"); !ok {
			return "", "", fmt.Errorf("%q: want an http:// or https:// URL", raw)
		}
	}
	i := strings.IndexAny(rest, "/?")
	switch {
	case i < 0:
		return rest, "/", nil
	case rest[i] == '?':
		return rest[:i], "/" + rest[i:], nil
	}
	return rest[:i], rest[i:], nil
}

// maskAuthorization keeps an Authorization header readable and useless: the
// keyId masked, the signature left out.
func maskAuthorization(v string) string {
	keyID := between(v, `keyId="`, `"`)
	sig := between(v, `signature="`, `"`)
	v = strings.Replace(v, `keyId="`+keyID+`"`, `keyId="`+signer.MaskKeyID(keyID)+`"`, 1)
	return strings.Replace(v, `signature="`+sig+`"`, `signature="…"`, 1)
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, to)
	return v
}

// curlCommand is the signed request as a curl command line: runnable only
// when the values are revealed.
func curlCommand(method, url string, client headerFlags, set []signer.Field, remove []string, data string, reveal bool) string {
	final := map[string]string{}
	var order []string
	put := func(name, value string) {
		if _, ok := final[name]; !ok {
			order = append(order, name)
		}
		final[name] = value
	}
	for _, h := range client {
		put(h.Name, h.Value)
	}
	for _, h := range set {
		put(h.Name, h.Value)
	}
	for _, r := range remove {
		delete(final, r)
	}
	var b strings.Builder
	b.WriteString("curl -X " + method + " " + shellQuote(url))
	for _, name := range order {
		if v, ok := final[name]; ok {
			b.WriteString(" \\\n  -H " + shellQuote(name+": "+v))
		}
	}
	if data != "" {
		if strings.HasPrefix(data, "@") && data != "@-" {
			b.WriteString(" \\\n  --data-binary " + shellQuote(data))
		} else {
			b.WriteString(" \\\n  --data-binary " + shellQuote(data))
		}
	}
	if !reveal {
		b.WriteString("\n# keyId and signature masked: add --reveal for a command that runs")
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func printSign(w io.Writer, r signResult, reveal bool) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-15s %s\n", k+":", v)
		}
	}
	line("profile", r.Profile)
	line("principal", r.Principal)
	line("key id", r.KeyID)
	line("request", r.Method+" "+r.URL)
	if r.Refused != nil {
		line("refused", fmt.Sprintf("%d %s", r.Refused.Status, r.Refused.Code))
		line("why", r.Refused.Message)
		return
	}
	line("signed headers", r.SignedHeaders)
	fmt.Fprintln(w, "\nheaders to set:")
	for _, f := range r.Set {
		fmt.Fprintf(w, "  %s: %s\n", f.Name, f.Value)
	}
	if len(r.Remove) > 0 {
		rm := append([]string(nil), r.Remove...)
		sort.Strings(rm)
		fmt.Fprintf(w, "headers to remove: %s\n", strings.Join(rm, ", "))
	}
	fmt.Fprintf(w, "\nsigning string:\n%s\n", r.SigningString)
	if r.Curl != "" {
		fmt.Fprintf(w, "\n%s\n", r.Curl)
	}
	if !reveal {
		fmt.Fprintln(w, "\n(keyId and signature masked; --reveal shows them)")
	}
}

// refusalExit sorts a refusal into the documented exit codes.
func refusalExit(code string) int {
	switch code {
	case extproc.CodeCredentialsExpired:
		return exitCredentials
	case extproc.CodeUnknownProfile, extproc.CodeCredentialsInvalid:
		return exitConfig
	}
	return exitFailure
}
