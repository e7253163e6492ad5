package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

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
	Set           []headerField  `json:"set_headers,omitempty"`
	Remove        []string       `json:"remove_headers,omitempty"`
	SigningString string         `json:"signing_string,omitempty"`
	Curl          string         `json:"curl,omitempty"`
	Warning       string         `json:"warning,omitempty"`
	Refused       *refusedResult `json:"refused,omitempty"`
}

// headerField is a header in sign's JSON.
type headerField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
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

// dataFlag is one of curl's body flags: -d/--data (text, or @file with its
// line breaks removed, as curl does), --data-binary (@file as it is) and
// --data-raw (text, no @). Each adds a part; curl joins them with &.
type dataFlag struct {
	parts *[]dataPart
	mode  dataMode
}

type dataMode int

const (
	dataText   dataMode = iota // -d, --data
	dataBinary                 // --data-binary
	dataRaw                    // --data-raw
)

type dataPart struct {
	mode  dataMode
	value string
}

func (d dataFlag) String() string { return "" }
func (d dataFlag) Set(v string) error {
	*d.parts = append(*d.parts, dataPart{d.mode, v})
	return nil
}

// body is the request body the parts make, as curl sends it.
func body(parts []dataPart, stdin io.Reader) ([]byte, error) {
	var out [][]byte
	for _, p := range parts {
		b := []byte(p.value)
		if p.mode != dataRaw && strings.HasPrefix(p.value, "@") {
			var err error
			if p.value == "@-" {
				b, err = io.ReadAll(stdin)
			} else {
				b, err = os.ReadFile(p.value[1:])
			}
			if err != nil {
				return nil, err
			}
			if p.mode == dataText {
				b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
			}
		}
		out = append(out, b)
	}
	return bytes.Join(out, []byte("&")), nil
}

// signArgs are sign's flags, spelled as curl spells them where curl has
// them, so that a curl command line can be turned into `ocisigner sign` by
// changing its first word.
type signArgs struct {
	cf      credentialFlags
	so      serveOptions
	method  string
	headers headerFlags
	data    []dataPart
	reveal  bool
	curl    bool
	asJSON  bool
}

func (a *signArgs) register(fs *flag.FlagSet) {
	a.cf.register(fs)
	fs.StringVar(&a.method, "X", "", "the request method (default GET, or POST when there is a body, as curl)")
	fs.StringVar(&a.method, "request", "", "the same as -X")
	fs.Var(&a.headers, "H", "a request header, 'name: value'; repeatable")
	fs.Var(&a.headers, "header", "the same as -H")
	fs.Var(dataFlag{&a.data, dataText}, "d", "the request body as curl's -d: text, @file (line breaks removed) or @- for standard input; repeatable, joined with &")
	fs.Var(dataFlag{&a.data, dataText}, "data", "the same as -d")
	fs.Var(dataFlag{&a.data, dataBinary}, "data-binary", "the request body as curl's --data-binary: text, or @file and @- read as they are")
	fs.Var(dataFlag{&a.data, dataRaw}, "data-raw", "the request body as curl's --data-raw: text, @ included")
	fs.BoolVar(&a.reveal, "reveal", false, "print the keyId and signature whole (they are credentials for five minutes: keep them out of logs and tickets)")
	fs.BoolVar(&a.curl, "curl", false, "print only the signed request as a curl command on standard output (runnable with --reveal)")
	fs.BoolVar(&a.asJSON, "json", false, "print JSON")
	fs.Var(&a.so.allowHosts, "allow-host", "also sign for hosts matching this pattern, as serve does; repeatable")
	fs.Var(&a.so.aliases, "alias", "add or replace a service alias, as serve does: NAME=TEMPLATE; repeatable")
	fs.StringVar(&a.so.genaiCompart, "genai-compartment", "", "compartment for Generative AI requests that name none, as serve does")
	fs.StringVar(&a.so.genaiProject, "genai-project", "", "project for Generative AI /openai/v1 requests that name none, as serve does")
}

// curlArgs splits what curl takes attached to its one-letter flags:
// -XPOST, -H'name: v', -d@file.
func curlArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && strings.ContainsRune("XHd", rune(a[1])) && a[2] != '=' {
			out = append(out, a[:2], a[2:])
			continue
		}
		out = append(out, a)
	}
	return out
}

func runSign(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	var a signArgs
	a.register(fs)
	pos, exit, ok := parseCommand(fs, curlArgs(args), getenv, stdout, stderr, a.cf.settle(getenv))
	if !ok {
		return exit
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "ocisigner sign: give one URL, e.g. https://objectstorage.us-ashburn-1.oraclecloud.com/n/ or http://localhost:10000/genai/openai/v1/models")
		return exitUsage
	}
	authority, target, err := splitURL(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return exitUsage
	}
	reqBody, err := body(a.data, os.Stdin)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign: the request body:", err)
		return exitUsage
	}
	method := a.method
	switch {
	case method != "":
	case len(a.data) > 0:
		method = "POST" // as curl: a body makes it a POST
	default:
		method = "GET"
	}
	srv, closeStore, exit := a.service(getenv, stderr)
	if srv == nil {
		return exit
	}
	defer closeStore()
	p := srv.Preview(ctx, extproc.PreviewRequest{Method: method, Authority: authority, Path: target, Header: a.headers, Body: reqBody})
	res, exit := a.report(p, method, reqBody)
	switch {
	case a.asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	case a.curl && res.Refused == nil:
		// Only the command, so that it can be piped to a shell.
		fmt.Fprintln(stdout, res.Curl)
		if res.Warning != "" {
			fmt.Fprintln(stderr, "warning:", res.Warning)
		}
		if !a.reveal {
			fmt.Fprintln(stderr, "ocisigner sign: keyId and signature masked; add --reveal for a command that runs")
		}
	default:
		printSign(stdout, res, a.reveal)
	}
	return exit
}

// service is the ext_proc service as `serve` would run it with these
// flags, on the credentials of the config's owner: its refusals carry the
// whole local error (DiscloseErrors), since here there is no gateway and
// the paths and profiles are the user's own.
func (a *signArgs) service(getenv environ, stderr io.Writer) (*extproc.Server, func(), int) {
	a.so.profileHeader = extproc.DefaultProfileHeader
	cfg, err := a.so.extprocConfig()
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return nil, nil, exitUsage
	}
	store, err := a.cf.open(getenv, discardLogger())
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return nil, nil, credentialExit(err)
	}
	cfg.Credentials, cfg.DefaultProfile, cfg.DiscloseErrors = store, a.cf.profileName(getenv), true
	srv, err := extproc.New(cfg)
	if err != nil {
		store.Close()
		fmt.Fprintln(stderr, "ocisigner sign:", err)
		return nil, nil, exitFailure
	}
	return srv, func() { store.Close() }, exitOK
}

// report is what sign prints of the service's answer, masked unless
// --reveal, and the exit code.
func (a *signArgs) report(p *extproc.Preview, method string, reqBody []byte) (signResult, int) {
	res := signResult{Profile: p.Profile, Principal: string(p.Kind), KeyID: p.KeyID, Method: method, URL: "https://" + p.Authority + p.Path, Remove: p.Remove}
	if p.Region != "" {
		if r, err := signer.ParseRegion(p.Region); err == nil {
			res.Warning = regionWarning(r)
		}
	}
	if r := p.Refused; r != nil {
		res.Refused = &refusedResult{r.Status, r.Code, r.Message}
		return res, refusalExit(r.Code)
	}
	s := p.Signed
	if s == nil {
		return res, exitOK
	}
	res.SignedHeaders, res.SigningString = s.SignedHeaders, signer.MaskSigningString(s.SigningString)
	var set []signer.Field
	for _, f := range p.Set {
		switch {
		case strings.HasPrefix(f.Name, ":"):
			continue // where the request goes: the URL says it
		case f.Name == signer.HeaderAuthorization && !a.reveal:
			f.Value = maskAuthorization(f.Value)
		case f.Name == signer.HeaderOBOToken && !a.reveal:
			f.Value = signer.MaskSecret(f.Value)
		}
		set = append(set, f)
		res.Set = append(res.Set, headerField(f))
	}
	if a.reveal {
		res.KeyID = between(s.Get(signer.HeaderAuthorization), `keyId="`, `"`)
		res.SigningString = s.SigningString
	}
	if a.curl {
		res.Curl = curlCommand(method, res.URL, a.headers, set, p.Remove, reqBody, a.data)
	}
	return res, exitOK
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

// curlCommand is the signed request as a curl command line, sending
// exactly the body that was signed: runnable when the values are revealed.
func curlCommand(method, url string, client headerFlags, set []signer.Field, remove []string, body []byte, parts []dataPart) string {
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
	switch {
	case len(parts) == 1 && parts[0].mode == dataBinary && strings.HasPrefix(parts[0].value, "@") && parts[0].value != "@-":
		// The file as it is: what was signed.
		b.WriteString(" \\\n  --data-binary " + shellQuote(parts[0].value))
	case len(body) > 0 && utf8.Valid(body) && !bytes.ContainsRune(body, 0):
		b.WriteString(" \\\n  --data-binary " + shellQuote(string(body)))
	case len(body) > 0:
		// Bytes a shell word cannot hold: the same bytes must be piped in.
		b.WriteString(" \\\n  --data-binary @-")
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
	line("warning", r.Warning)
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
