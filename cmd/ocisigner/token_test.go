package main

import (
	"encoding/json"
	"flag"
	"strings"
	"testing"
)

func TestTokenCommand(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}
	raw := readToken(t, fx, "SESSION")

	code, out, _ := runCmd(t, env, "token", "--profile", "SESSION")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, s := range []string{"principal:    security_token", "subject:      ocid1.user.oc1..me", "tenancy:", "created:", "expires:", "remaining:", "session ends:", "token:"} {
		if !strings.Contains(out, s) {
			t.Errorf("lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, raw[20:60]) {
		t.Fatal("token shown without --reveal")
	}

	if code, out, _ = runCmd(t, env, "token", "--profile", "SESSION", "--reveal"); code != exitOK || !strings.Contains(out, raw) {
		t.Fatalf("--reveal: exit %d\n%s", code, out)
	}

	// An expired token is still described, and the exit says credentials.
	code, out, _ = runCmd(t, env, "token", "--profile", "EXPIRED")
	if code != exitCredentials || !strings.Contains(out, "remaining:    EXPIRED") || !strings.Contains(out, "created:") {
		t.Fatalf("expired: exit %d\n%s", code, out)
	}

	code, out, _ = runCmd(t, env, "token", "--all", "--json")
	var reports []tokenReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatal(err)
	}
	byName := map[string]tokenReport{}
	for _, r := range reports {
		byName[r.Profile] = r
	}
	if len(reports) != 4 || byName["API"].Principal != "api_key" || byName["API"].Token != "" || !byName["EXPIRED"].Expired || byName["SESSION"].Expired {
		t.Fatalf("--all: exit %d %+v", code, reports)
	}
	if strings.Contains(out, raw[20:60]) {
		t.Fatal("JSON shows the token without --reveal")
	}
}

func readToken(t *testing.T, fx *fixture, profile string) string {
	t.Helper()
	p, err := readProfileToken(fx.folder.Path("sessions/" + profile + "/token"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want serveOptions
	}{
		{"environment fills unset flags", nil, map[string]string{"OCISIGNER_MAX_BODY_BYTES": "1024", "OCISIGNER_ALLOW_HOST": "a.example, *.b.example", "OCISIGNER_LOG_FORMAT": "json"},
			serveOptions{maxBodyBytes: 1024, allowHosts: stringList{"a.example", "*.b.example"}, logFormat: "json"}},
		{"flags win", []string{"--max-body-bytes", "5", "--allow-host", "c.example"}, map[string]string{"OCISIGNER_MAX_BODY_BYTES": "1024", "OCISIGNER_ALLOW_HOST": "a.example"},
			serveOptions{maxBodyBytes: 5, allowHosts: stringList{"c.example"}, logFormat: "text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			var o serveOptions
			o.register(fs)
			if _, err := parseFlags(fs, tc.args, mapEnv(tc.env)); err != nil {
				t.Fatal(err)
			}
			if o.maxBodyBytes != tc.want.maxBodyBytes || o.allowHosts.String() != tc.want.allowHosts.String() || o.logFormat != tc.want.logFormat {
				t.Fatalf("got %+v", o)
			}
		})
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o serveOptions
	o.register(fs)
	if _, err := parseFlags(fs, nil, mapEnv(map[string]string{"OCISIGNER_MAX_BODY_BYTES": "lots"})); err == nil || !strings.Contains(err.Error(), "OCISIGNER_MAX_BODY_BYTES") {
		t.Fatalf("a bad environment value must name its variable: %v", err)
	}
}
