package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// envPrefix is the prefix of the environment variable behind every flag:
// --max-body-bytes is also OCISIGNER_MAX_BODY_BYTES.
const envPrefix = "OCISIGNER_"

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag not given on the command
// line from its OCISIGNER_* variable. Flags win over the environment.
// Repeatable flags take a comma-separated list from the environment.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > helpFor(fs.Name()).args {
		return fmt.Errorf("unexpected argument %q", fs.Arg(helpFor(fs.Name()).args))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || !fromEnv(f.Name) {
			return
		}
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		if _, repeatable := f.Value.(*stringList); repeatable {
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					if e := f.Value.Set(item); e != nil {
						err = fmt.Errorf("%s: %w", envName(f.Name), e)
					}
				}
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
		}
	})
	return err
}

// parseCommand parses a command's flags; when it returns false the command
// is over and exit is its exit code (0 for -h, 2 for a usage error). Help
// goes to stdout, errors to stderr.
func parseCommand(fs *flag.FlagSet, args []string, getenv func(string) string, stdout, stderr io.Writer) (exit int, ok bool) {
	fs.SetOutput(io.Discard) // the flag package's own messages: said below, once
	fs.Usage = func() {}
	if err := parseFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return exitOK, false
		}
		fmt.Fprintf(stderr, "ocisigner %s: %v\nRun \"ocisigner %s -h\" for its flags.\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	}
	return exitOK, true
}

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
