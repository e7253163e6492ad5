package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer"
)

// exitRefused is policy check's answer when the policy refuses the request.
const exitRefused = 6

// runPolicy is `ocisigner policy check`: what a caller would get for a
// request under a policy file, and which rule decides, without signing.
func runPolicy(_ context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	var file, caller, method, profile string
	var aliases stringList
	fs.StringVar(&file, "policy", "", "the policy file, as serve --policy takes it")
	fs.StringVar(&caller, "caller", "", `who asks, as the access log's caller= says it: spiffe://..., dns:NAME, subject:DN, jwt:iss=ISSUER,sub=SUBJECT[,CLAIM=VALUE...], key:NAME, or none; several separated by spaces (write a space or ',' in a value as %20 or %2C)`)
	fs.StringVar(&method, "method", "GET", "the request's HTTP method")
	fs.StringVar(&profile, "request-profile", "", "the profile the request names (its x-oci-profile header or route pin); unset: the rule's default_profile")
	fs.Var(&aliases, "alias", "a service alias serve has with --alias NAME=TEMPLATE, so that /NAME/... is read as that alias; repeatable")
	need := func() error {
		switch {
		case file == "":
			return errors.New("name the policy file with --policy (or OCISIGNER_POLICY)")
		case caller == "":
			return errors.New("say who asks with --caller, e.g. --caller spiffe://cluster.local/ns/team-a/sa/builder, or --caller none")
		}
		return nil
	}
	pos, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, need)
	if !ok {
		return exit
	}
	if len(pos) != 2 || pos[0] != "check" {
		return usageError(stderr, "policy", "usage: "+helpFor("policy").usage)
	}
	known := map[string]bool{}
	for _, a := range signer.Aliases() {
		known[a.Name] = true
	}
	for _, spec := range aliases {
		a, err := signer.ParseAlias(spec)
		if err != nil {
			return usageError(stderr, "policy", "--alias: "+err.Error())
		}
		known[a.Name] = true
	}
	p, err := policy.Load(file)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner policy:", err)
		return exitUsage
	}
	req, err := policy.ParseRequest(method, pos[1], profile, func(s string) bool { return known[s] })
	if err != nil {
		return usageError(stderr, "policy", err.Error())
	}
	e, err := p.ExplainCaller(caller, req)
	if err != nil {
		return usageError(stderr, "policy", "--caller: "+strings.TrimPrefix(err.Error(), policy.ErrInvalidCaller.Error()+": "))
	}
	fmt.Fprint(stdout, e.String())
	if !e.Decision.Allowed {
		return exitRefused
	}
	return exitOK
}

// runKeys is `ocisigner keys add NAME` and `ocisigner keys revoke NAME`.
func runKeys(_ context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	var file string
	fs.StringVar(&file, "keys", "", "the keys file, as serve --keys takes it (made, mode 0600, if missing)")
	need := func() error {
		if file == "" {
			return errors.New("name the keys file with --keys (or OCISIGNER_KEYS)")
		}
		return nil
	}
	pos, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, need)
	if !ok {
		return exit
	}
	if len(pos) != 2 || (pos[0] != "add" && pos[0] != "revoke") {
		return usageError(stderr, "keys", "usage: "+helpFor("keys").usage)
	}
	name := pos[1]
	if pos[0] == "revoke" {
		if err := policy.RevokeKey(file, name); err != nil {
			return keysError(stderr, err)
		}
		fmt.Fprintf(stderr, "revoked %s in %s: a gateway watching the file refuses the key from its next reload (a few seconds), without a restart\n", name, file)
		return exitOK
	}
	k, err := policy.AddKey(file, name)
	if err != nil {
		return keysError(stderr, err)
	}
	// The key on stdout alone, for a pipe into a secret store; the rest on
	// stderr. It is never shown again: the file holds its hash.
	fmt.Fprintln(stdout, k.Reveal())
	fmt.Fprintf(stderr, "added key %s to %s (its SHA-256, not the key). This is the only time the key is shown: give it to the caller as its OpenAI SDK api_key "+
		"(Authorization: Bearer) or api-key header, and name it in a policy rule (callers: - key: %s)\n", name, file, name)
	return exitOK
}

// keysError: a file that cannot be read or written is configuration (3);
// a name, a duplicate, a file that does not parse, the operator's input (2).
func keysError(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "ocisigner keys:", err)
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	if errors.As(err, &pathErr) || errors.As(err, &linkErr) {
		return exitConfig
	}
	return exitUsage
}

func usageError(stderr io.Writer, cmd, msg string) int {
	fmt.Fprintf(stderr, "ocisigner %s: %s\nRun \"ocisigner %s -h\" for its flags.\n", cmd, msg, cmd)
	return exitUsage
}
