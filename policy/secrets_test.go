package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

// A gateway key and a bearer token, wherever a client or an operator puts
// them (a header, a policy file, a keys file, a caller description), never
// come out in an error, a log line, a message, a label, or a Key printed
// or marshalled any way.
func TestNoKeyOrTokenInAnyOutput(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k := key.Reveal()
	const token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwczovL2kiLCJzdWIiOiJzZWNyZXRzdWJqZWN0In0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
	var out []string
	add := func(s ...string) { out = append(out, s...) }
	addErr := func(err error) {
		if err == nil {
			t.Errorf("no error (output %d)", len(out))
			return
		}
		add(err.Error(), fmt.Sprintf("%+v", err))
	}

	// The Key itself, printed and marshalled.
	type holder struct {
		K Key
		k Key
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.60s"} {
		add(fmt.Sprintf(verb, key), fmt.Sprintf(verb, holder{key, key}), fmt.Sprintf(verb, []Key{key}), fmt.Sprintf(verb, &key))
	}
	add(fmt.Sprint(key), fmt.Sprintln(key), key.String(), key.GoString())
	j, _ := json.Marshal(holder{K: key})
	add(string(j))
	var logs strings.Builder
	lg := slog.New(slog.NewTextHandler(&logs, nil))
	lg.Info("x", "key", key, "holder", holder{key, key}, slog.Group("g", "key", key))
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "key", key, "holder", holder{K: key})

	// Presented keys, right and wrong.
	path := filepath.Join(t.TempDir(), "keys")
	stored, _ := AddKey(path, "stored")
	ks, _ := LoadKeys(path)
	for _, p := range []string{k, k + "x", k[:len(k)-1], "Bearer " + k, token} {
		_, err := ks.Lookup(NewKey(p))
		addErr(err)
	}
	_, err = ks.Lookup(stored)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AddKey(path, "stored")
	addErr(err)
	_, err = AddKey(path, k)
	addErr(err)
	addErr(RevokeKey(path, k))

	// Keys where hashes belong, in a keys file read at start and reloaded.
	for _, src := range []string{"a " + k + "\n", "# " + k + "\n", k + " sha256:x\n", "a sha256:" + k + "\n", "a " + token + "\n"} {
		_, err := ParseKeys([]byte(src), "keys")
		addErr(err)
	}

	// Keys and tokens in a policy file, read at start and on a reload.
	policies := []string{
		strings.Replace(rule0, "key: a", "key: "+k, 1),
		strings.Replace(rule0, "key: a", "jwt: {issuer: i, subject: "+token+"***}", 1),
		strings.Replace(rule0, "profiles: [p]", "profiles: ["+k+"]", 1),
		strings.Replace(rule0, "name: ok", "name: "+k, 1),
		strings.Replace(rule0, "methods: [GET]", "methods: [GET]\n    "+k+": x", 1),
		strings.Replace(rule0, "methods: [GET]", "methods: ["+token+"]", 1),
		strings.Replace(rule0, "services: [genai]", "services: ["+k+"]", 1),
		strings.Replace(rule0, "version: 1", "version: "+token, 1),
		"version: 1\nrules: [" + k + ": {\n",
	}
	for _, src := range policies {
		_, err := Parse([]byte(src), "p.yaml")
		addErr(err)
	}
	ppath := filepath.Join(t.TempDir(), "policy.yaml")
	writeRename(t, ppath, rule0)
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	w, err := WatchPolicy(ppath, WithClock(clock), WithLogger(lg), WithOnReload(func(ev ReloadEvent) {
		if ev.Err != nil {
			add(ev.Err.Error())
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range policies {
		writeRename(t, ppath, src)
		w.Check()
		clock.Advance(DefaultInterval)
		addErr(w.Check())
	}

	// Keys and tokens as callers: descriptions, claims, labels, refusals.
	for _, desc := range []string{"key:" + k, token, "Bearer " + k, "jwt:iss=i,sub=s,x=" + k + "%", "jwt:iss=" + token, k} {
		_, err := ParseCaller(desc)
		addErr(err)
	}
	p := mustParse(t, decideYAML)
	for _, c := range []*Caller{
		{Key: k}, {JWT: &JWT{Issuer: "i", Subject: token}}, {Peer: &Peer{URIs: []string{"spiffe://td/" + k}, Subject: "CN=" + token}},
		{JWT: &JWT{Issuer: "i", Subject: "s", Claims: map[string][]string{"c": {token + "\x00"}}}},
	} {
		add(c.Label())
		d := p.Decide(c, Request{Alias: "genai", Method: "GET", Profile: k})
		add(d.Message, d.MetricLabel(), p.Explain(c, Request{Host: token + ".example", Method: "GET"}).String())
	}
	_, err = NewJWT(map[string]any{"iss": "i", "sub": token, "x": strings.Repeat(k, 30)})
	addErr(err)
	_, err = ParseRequest("GET", "http://localhost/"+k, k, nil)
	addErr(err)
	_, err = ParseRequest(token, "http://h/", "", nil)
	addErr(err)
	add(logs.String())

	secrets := map[string]string{"the key": k, "the key's random part": k[len(KeyPrefix):], "the token's payload": strings.Split(token, ".")[1],
		"the token's signature": strings.Split(token, ".")[2], "the token's header": strings.Split(token, ".")[0]}
	for _, o := range out {
		for what, s := range secrets {
			if strings.Contains(o, s) || strings.Contains(o, s[:16]) {
				t.Errorf("%s in %q", what, o)
			}
		}
	}
	if !strings.Contains(logs.String(), "keeping the last good one") {
		t.Error("the reloads were not logged: the test looked at nothing")
	}
	if len(out) < 100 {
		t.Errorf("only %d outputs looked at", len(out))
	}
	var pe *ParseError
	if !errors.As(w.Check(), &pe) {
		t.Error("the last version is not a parse error")
	}
	os.Remove(ppath)
}
