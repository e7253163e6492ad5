package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// command is one of ocisigner's commands: what `ocisigner <command> -h`
// prints besides the flags, and what runs it. Commands are declared here
// once, as cmd/go declares its own.
type command struct {
	name     string
	purpose  string // one line
	usage    string
	examples [2]string
	exits    []int
	args     int // positional arguments it takes
	run      func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int
}

// exitMeaning says what each exit code means, for the help of the commands
// that use it.
var exitMeaning = map[int]string{
	exitOK:          "success",
	exitFailure:     "an unexpected answer or an internal error",
	exitUsage:       "bad flags or arguments",
	exitConfig:      "configuration: profile, config file or key file not usable",
	exitCredentials: "credentials: token expired, or OCI answered 401",
	exitNetwork:     "network: the endpoint (or the gateway) could not be reached",
	exitRefused:     "policy check: the policy refuses the request",
}

// commands is set in init: the run functions refer to the table (help).
var commands []command

func init() {
	commands = []command{
		{name: "serve", purpose: "run the Envoy ext_proc service that signs OCI requests",
			usage: "ocisigner serve [flags]",
			examples: [2]string{
				"ocisigner serve --profile TEST123",
				"ocisigner serve --profile-header \"\" --profiles PROD --alias myai=inference.generativeai.{region}.oci.{domain}",
			},
			exits: []int{exitOK, exitFailure, exitUsage, exitConfig}, run: runServe},
		{name: "probe", purpose: "sign a GET /n/ to Object Storage and report whether OCI accepts it",
			usage: "ocisigner probe [flags]",
			examples: [2]string{
				"ocisigner probe --profile TEST123 -v",
				"ocisigner probe --via http://localhost:10000 --json",
			},
			exits: []int{exitOK, exitFailure, exitUsage, exitConfig, exitCredentials, exitNetwork}, run: runProbe},
		{name: "token", purpose: "show a profile's token metadata (the token itself masked)",
			usage: "ocisigner token [flags]",
			examples: [2]string{
				"ocisigner token --profile TEST123",
				"ocisigner token --all --json",
			},
			exits: []int{exitOK, exitUsage, exitConfig, exitCredentials, exitNetwork}, run: runToken},
		{name: "sign", purpose: "sign one request without sending it: the headers the gateway would set, the signing string, the keyId",
			usage: "ocisigner sign [flags] URL",
			examples: [2]string{
				"ocisigner sign --profile TEST123 https://objectstorage.us-ashburn-1.oraclecloud.com/n/",
				"ocisigner sign -X POST -H 'content-type: application/json' --data @body.json --curl --reveal http://localhost:10000/genai/openai/v1/chat/completions",
			},
			exits: []int{exitOK, exitFailure, exitUsage, exitConfig, exitCredentials}, args: 1, run: runSign},
		{name: "policy", purpose: "say what a caller would get under a policy file, and which rule decides, without signing",
			usage: "ocisigner policy check --caller DESC --policy FILE [--method M] [--request-profile NAME] URL",
			examples: [2]string{
				"ocisigner policy check --policy policy.yaml --caller spiffe://cluster.local/ns/team-a/sa/builder https://objectstorage.us-ashburn-1.oraclecloud.com/n/",
				"ocisigner policy check --policy policy.yaml --caller key:team-c-chat --method POST http://localhost:10000/genai/openai/v1/chat/completions",
			},
			exits: []int{exitOK, exitUsage, exitRefused}, args: 2, run: runPolicy},
		{name: "keys", purpose: "add a gateway key (shown once; the keys file keeps its hash) or revoke one",
			usage: "ocisigner keys add|revoke NAME --keys FILE",
			examples: [2]string{
				"ocisigner keys add team-c-chat --keys /etc/ocisigner/keys",
				"ocisigner keys revoke team-c-chat --keys /etc/ocisigner/keys",
			},
			exits: []int{exitOK, exitUsage, exitConfig}, args: 2, run: runKeys},
		{name: "ca", purpose: "print the HTTPS interception CA's certificate, or write a bundle of the system roots and it; --init creates the CA first",
			usage: "ocisigner ca [flags]",
			examples: [2]string{
				"ocisigner ca --state-dir /var/lib/ocisigner > ocisigner-ca.pem",
				"ocisigner ca --init --state-dir ./ocisigner-ca --bundle ./ocisigner-ca/ca-bundle.pem",
			},
			exits: []int{exitOK, exitFailure, exitUsage, exitConfig}, run: runCA},
		{name: "client-config", purpose: "write a throwaway-key OCI config, with the gateway's region, for SDKs that insist on one behind interception",
			usage: "ocisigner client-config --dir DIR [flags]",
			examples: [2]string{
				"ocisigner client-config --dir ./oci-throwaway --profile TEST123",
				"ocisigner client-config --dir /workspace/.oci --region us-ashburn-1",
			},
			exits: []int{exitOK, exitFailure, exitUsage, exitConfig}, run: runClientConfig},
		{name: "version", purpose: "print the version and the RSA implementation", usage: "ocisigner version",
			examples: [2]string{"ocisigner version", "docker compose run --rm signer version"},
			exits:    []int{exitOK}, run: runVersion},
		{name: "help", purpose: "help for a command", usage: "ocisigner help <command>",
			examples: [2]string{"ocisigner help", "ocisigner help serve"},
			exits:    []int{exitOK, exitUsage}, args: 1, run: runHelp},
	}
}

func helpFor(name string) command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return command{name: name, usage: "ocisigner " + name + " [flags]"}
}

// lookup finds a command by name; the version flags name the version command.
func lookup(name string) (command, bool) {
	switch name {
	case "--version", "-version":
		name = "version"
	case "-h", "--help":
		name = "help"
	}
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr); !ok {
		return exit
	}
	fmt.Fprintf(stdout, "ocisigner %s (RSA: %s)\n", versionString(), signer.Backend())
	return exitOK
}

// runHelp prints the overview, or a command's own -h: its flags exist only
// in the command.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	pos, exit, ok := parseCommand(flag.NewFlagSet("help", flag.ContinueOnError), args, getenv, stdout, stderr)
	if !ok {
		return exit
	}
	if len(pos) == 0 {
		usage(stdout)
		return exitOK
	}
	c, ok := lookup(pos[0])
	if !ok {
		fmt.Fprintf(stderr, "ocisigner help: unknown command %q\n", pos[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(ctx, []string{"-h"}, stdout, stderr, getenv)
}

// fromEnv reports whether a flag is also read from its environment
// variable. --reveal never is: a variable left set (in a compose file, a CI
// job) must not print credentials; nor are the one-letter flags of a single
// request (sign's -X and -H).
func fromEnv(name string) bool { return name != "reveal" && len(name) > 1 }

// printHelp writes a command's help: purpose, usage, its own flags (each
// with its environment variable), two examples, the exit codes.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	c := helpFor(fs.Name())
	fmt.Fprintf(w, "ocisigner %s: %s\n\nusage: %s\n", c.name, c.purpose, c.usage)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		fmt.Fprint(w, "\nflags (each also from the environment variable shown):\n")
		for _, f := range flags {
			env := "[" + envName(f.Name) + "]"
			if !fromEnv(f.Name) {
				env = "[never from the environment]"
			}
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "  %s%s  %s%s\n      %s\n", dash, f.Name, env, def, f.Usage)
		}
	}
	fmt.Fprintf(w, "\nexamples:\n  %s\n  %s\n\nexit codes:\n", c.examples[0], c.examples[1])
	for _, code := range c.exits {
		fmt.Fprintf(w, "  %d  %s\n", code, exitMeaning[code])
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: ocisigner <command> [flags]\n\ncommands:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.purpose)
	}
	fmt.Fprint(w, "\nRun \"ocisigner <command> -h\" for a command's flags, examples and exit codes.\n")
}

// versionString is the stamped version, else what the Go build recorded:
// the module version, or the VCS revision of a build from a checkout.
func versionString() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev != "":
		return "dev-" + rev + modified
	case v != "" && v != "(devel)":
		return v
	}
	return "dev (" + strings.TrimPrefix(info.GoVersion, "go") + ", not stamped)"
}
