package extproc_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// writeFakeEnvoy writes an executable "envoy" into dir: a shell script, as
// a wrapper around a real binary would be, that runs this test binary as
// the fake Envoy (fakeEnvoy), recording into record.
func writeFakeEnvoy(t *testing.T, dir, record string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{exe, record} {
		if strings.ContainsRune(p, '\'') {
			t.Fatalf("cannot quote %q for the shell", p)
		}
	}
	script := filepath.Join(dir, "envoy")
	// The race detector sleeps a second at exit by default (GORACE
	// atexit_sleep_ms): the fake is started twice per stack.
	body := fmt.Sprintf("#!/bin/sh\nGORACE=\"${GORACE:+$GORACE }atexit_sleep_ms=0\" %s='%s' exec '%s' \"$@\"\n", fakeEnvoyEnv, record, exe)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// With OCISIGNER_ENVOY naming an Envoy, the table runs its cases against
// that Envoy: each of its stacks starts the binary with the shipped
// envoy.yaml rendered for the stack, waits for the admin interface's
// /ready, sends through the listener the admin interface names, and stops
// the process. The binary here is the fake Envoy, which records what it was
// asked and plays the listener with the stand-in, so the cases pass through
// the process; the record shows the command line, the config file (it must
// be exactly the rendered shipped envoy.yaml), the wait for readiness
// before any request, and the stop. The environment is a lookup, so this
// runs in parallel. It sends the first case of each group: through the
// fake the others take the same path (the bulk ones at a second of CPU
// each), and the table itself runs them against the stand-in.
func TestEndToEndTableRunsOnTheEnvoyOCISIGNER_ENVOYNames(t *testing.T) {
	t.Parallel()
	if bin := envoyUnderTest(t, func(string) string { return "" }); bin != "" {
		t.Fatalf("without %s the table runs on %q, want the stand-in", envoyBinaryEnv, bin)
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	env := map[string]string{envoyBinaryEnv: writeFakeEnvoy(t, dir, record)}
	// The first case of each group of each fixture: every kind of answer
	// (signed, refused by ocisigner) through each process, at a fraction
	// of the table's CPU.
	var cases []e2eCase
	seen := map[string]bool{}
	for _, c := range e2eCases() {
		group := fmt.Sprint(c.fixture, strings.Split(c.name, "/")[0])
		if !c.bulk() && !seen[group] {
			seen[group] = true
			cases = append(cases, c)
		}
	}
	if !t.Run("table", func(t *testing.T) {
		runEndToEndTable(t, envoyUnderTest(t, func(k string) string { return env[k] }), cases)
	}) {
		t.Fatal("the table failed when run through the process runner")
	}
	runs, err := readFakeRecord(record)
	if err != nil {
		t.Fatal(err)
	}
	var served []fakeRun
	versions := 0
	for _, r := range runs {
		if slices.Equal(r.events, []string{"args --version", "version"}) {
			versions++
		} else {
			served = append(served, r)
		}
	}
	if fixtures := 2; versions != fixtures || len(served) != fixtures {
		t.Fatalf("%d --version runs and %d served runs, want one each per fixture (%d):\n%v", versions, len(served), fixtures, runs)
	}
	requests := 0
	for _, r := range served {
		requests += checkFakeRun(t, r, record)
	}
	if requests != len(cases) {
		t.Errorf("the fake Envoys answered %d requests, the table sent %d", requests, len(cases))
	}
}

// checkFakeRun checks one fake Envoy's record and returns how many
// requests it answered.
func checkFakeRun(t *testing.T, r fakeRun, record string) int {
	t.Helper()
	at := func(ev string) int { return slices.Index(r.events, ev) }
	args := strings.Fields(strings.TrimPrefix(r.events[0], "args "))
	cfgPath := ""
	if i := slices.Index(args, "--config-path"); i >= 0 && i+1 < len(args) {
		cfgPath = args[i+1]
	}
	if !strings.HasSuffix(cfgPath, ".json") || !slices.Contains(args, "--use-dynamic-base-id") || at("base-id dynamic=true static=0") < 0 {
		t.Errorf("pid %s: command line %q: want --config-path <file>.json and --use-dynamic-base-id", r.pid, args)
	}
	data, err := os.ReadFile(fmt.Sprintf("%s.%s.json", record, r.pid))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := envoyconfig.Load(data)
	if err != nil {
		t.Fatalf("pid %s: the config file does not load: %v", r.pid, err)
	}
	if want := renderShipped(t, envoyconfig.Endpoints{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Signer: clusterAddr(t, bs, envoyconfig.SignerCluster), Upstream: clusterAddr(t, bs, envoyconfig.OCICluster)}); !envoyconfig.Equal(bs, want) {
		t.Errorf("pid %s: the config file is not the shipped envoy.yaml as envoyconfig.ForTest renders it", r.pid)
	}
	// A request is recorded when the stand-in logs it, after the answer,
	// so the last may come after the SIGTERM that followed the answer; the
	// stand-in's Close waits for it.
	isRequest := func(ev string) bool { return strings.HasPrefix(ev, "request ") }
	first, last := slices.IndexFunc(r.events, isRequest), -1
	for i, ev := range r.events {
		if isRequest(ev) {
			last = i
		}
	}
	order := []int{at("ready 503"), at("ready 200"), at("listeners format=json"), first}
	stop := []int{at("signal terminated"), at("unprocessed 0")}
	if slices.Contains(order, -1) || !slices.IsSorted(order) || slices.Contains(stop, -1) || !slices.IsSorted(stop) || last > stop[1] {
		t.Errorf("pid %s: events %q: want /ready polled until LIVE, then the listener's port, then requests; SIGTERM, then the stand-in closed", r.pid, r.events)
	}
	n := 0
	for _, ev := range r.events {
		if strings.HasPrefix(ev, "request ") {
			n++
		}
	}
	return n
}

func clusterAddr(t *testing.T, bs *bootstrapv3.Bootstrap, name string) string {
	t.Helper()
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			return net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
		}
	}
	t.Fatalf("no cluster %s", name)
	return ""
}

// The runner fails with Envoy's own words when Envoy does not start, names
// the variable when it is not given an Envoy, and reports an Envoy that
// died during the test.
func TestRealEnvoyRunnerReportsWhatWentWrong(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fake := writeFakeEnvoy(t, dir, filepath.Join(dir, "record"))
	// Port 70000 fails Envoy's validation of the admin address.
	bad := &bootstrapv3.Bootstrap{Admin: &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 70000}}}}},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{{Name: "ingress"}}}}
	for _, tc := range []struct {
		name, bin string
		bs        *bootstrapv3.Bootstrap
		want      []string
	}{
		{"Envoy refuses the config", fake, bad, []string{"exited before it was ready", "error initializing configuration", "PortValue"}},
		{"not an Envoy", "/bin/true", bad, []string{"--version", envoyBinaryEnv + "=/bin/true", "an Envoy binary?"}},
		{"no such file", filepath.Join(dir, "nosuch"), bad, []string{"--version", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := startEnvoyProcess(tc.bin, tc.bs, t.TempDir())
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to say %q", err, w)
				}
			}
		})
	}
	t.Run("Envoy died during the test", func(t *testing.T) {
		bs := renderShipped(t, envoyconfig.Endpoints{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Signer: "127.0.0.1:1", Upstream: "127.0.0.1:1"})
		p, err := startEnvoyProcess(fake, bs, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		if err := p.stop(); err == nil || !strings.Contains(err.Error(), "exited before it was stopped") {
			t.Fatalf("stop after Envoy died: %v", err)
		}
	})
}
