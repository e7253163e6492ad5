package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// environ is the environment a command reads: os.LookupEnv, or a test's.
// A variable set to "" is set: OCISIGNER_PROFILE_HEADER= means what
// --profile-header "" means.
type environ func(string) (string, bool)

// get is the variable's value, "" when unset.
func (e environ) get(k string) string {
	v, _ := e(k)
	return v
}

// envPrefix is the prefix of the environment variable behind every flag:
// --max-body-bytes is also OCISIGNER_MAX_BODY_BYTES.
const envPrefix = "OCISIGNER_"

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, flags before, between and after the positional
// arguments (as curl takes them; "--" ends the flags), then fills every
// flag not given on the command line from its OCISIGNER_* variable. Flags
// win over the environment. Repeatable flags take a comma-separated list
// from the environment. It returns the positional arguments.
func parseFlags(fs *flag.FlagSet, args []string, getenv environ) ([]string, error) {
	var positional, tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	positional = append(positional, tail...)
	if len(positional) > helpFor(fs.Name()).args {
		return nil, fmt.Errorf("unexpected argument %q", positional[helpFor(fs.Name()).args])
	}
	return positional, applyEnv(fs, getenv)
}

// applyEnv fills every flag not given on the command line from the
// environment.
func applyEnv(fs *flag.FlagSet, getenv environ) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || !fromEnv(f.Name) {
			return
		}
		v, ok := getenv(envName(f.Name))
		if !ok || v == "" && !isStringFlag(f) {
			// Unset; or empty, which is no value for a number, a duration,
			// a switch or a list.
			return
		}
		if _, repeatable := f.Value.(*stringList); repeatable {
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					if e := fs.Set(f.Name, item); e != nil {
						err = fmt.Errorf("%s: %w", envName(f.Name), e)
					}
				}
			}
			return
		}
		// fs.Set, not f.Value.Set: the flag then counts as given (fs.Visit),
		// as --profile-header "" on the command line does.
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
		}
	})
	return err
}

// isStringFlag: a flag whose value is a string, for which an empty value is
// a value ("" turns --profile-header and --admin off).
func isStringFlag(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, isString := g.Get().(string)
	return isString
}

// parseCommand parses a command's flags; when it returns false the command
// is over and exit is its exit code (0 for -h, 2 for a usage error). Help
// goes to stdout, errors to stderr.
//
// checks, when given, runs once the flags are in: what it returns is a
// usage error too (a flag whose value does not fit another's).
func parseCommand(fs *flag.FlagSet, args []string, getenv environ, stdout, stderr io.Writer, checks ...func() error) (positional []string, exit int, ok bool) {
	fs.SetOutput(io.Discard) // the flag package's own messages: said below, once
	fs.Usage = func() {}
	positional, err := parseFlags(fs, args, getenv)
	for _, check := range checks {
		if err == nil {
			err = check()
		}
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return nil, exitOK, false
		}
		fmt.Fprintf(stderr, "ocisigner %s: %v\nRun \"ocisigner %s -h\" for its flags.\n", fs.Name(), flagHint(fs, err), fs.Name())
		return nil, exitUsage, false
	}
	return positional, exitOK, true
}

// flagHint adds what the flag package leaves out of its "parse error":
// what a value of that flag looks like.
func flagHint(fs *flag.FlagSet, err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[1])
	if f == nil {
		return err
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err
	}
	switch g.Get().(type) {
	case time.Duration:
		return fmt.Errorf("%w: want a duration, a number with a unit, e.g. 15s, 2m or 1h30m", err)
	case int, int64, uint, uint64:
		return fmt.Errorf("%w: want a whole number", err)
	case bool:
		return fmt.Errorf("%w: want true or false", err)
	}
	return err
}

var badValue = regexp.MustCompile(`invalid (?:value|boolean value) ".*" for flag -+([A-Za-z0-9-]+): parse error`)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// newLogger builds the process logger: text or JSON on w, at the level named.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// urlFlag is a flag that takes a base URL, checked as it is parsed (one
// parser for every such flag): a typo stops the command with exit 2 naming
// the flag, instead of showing up later in /readyz or a failed refresh.
type urlFlag struct {
	value string
	// plainHTTP says where http:// may be used; nil: anywhere. A URL that
	// a token or a secret is sent to takes https, but on loopback.
	plainHTTP func(host string) bool
}

func (u *urlFlag) String() string { return u.value }
func (u *urlFlag) Set(v string) error {
	s, err := parseBaseURL(v, u.plainHTTP)
	if err != nil {
		return err
	}
	u.value = s
	return nil
}

// parseBaseURL accepts scheme://host[:port][/path]: http or https, a host
// name or IP literal as signer.ParseAuthority takes one, no user
// information, query or fragment. A trailing slash is dropped.
func parseBaseURL(raw string, plainHTTP func(string) bool) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: want an http:// or https:// URL", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#") || strings.HasSuffix(raw, "?"):
		return "", fmt.Errorf("%q: a base URL has no user information, query or fragment", u.Redacted())
	}
	a, err := signer.ParseAuthority(u.Host)
	if err != nil {
		return "", fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme == "http" && plainHTTP != nil && !plainHTTP(a.Host) {
		return "", fmt.Errorf("%q is http://: what is sent there (a token, a signature) would cross the network in clear; use https://", raw)
	}
	return strings.TrimSuffix(u.Scheme+"://"+a.String()+u.EscapedPath(), "/"), nil
}

// loopback: localhost or a loopback IP literal.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}
