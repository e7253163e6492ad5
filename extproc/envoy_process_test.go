package extproc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// envoyBinaryEnv names the Envoy binary the end-to-end table
// (e2e_table_test.go) runs against. Unset, the table runs against the
// stand-in; set, every stack of the table starts that binary with the
// shipped envoy.yaml, rendered by envoyconfig.ForTest for the stack's
// loopback ports, signer and OCI stand-in.
const envoyBinaryEnv = "OCISIGNER_ENVOY"

// envoyUnderTest is the binary OCISIGNER_ENVOY names in the environment
// getenv reads (os.Getenv), or "" for the stand-in; the test log says
// which one runs.
func envoyUnderTest(t *testing.T, getenv func(string) string) string {
	t.Helper()
	bin := getenv(envoyBinaryEnv)
	if bin == "" {
		t.Logf("Envoy: the stand-in (extproc/extproctest) configured by the shipped envoy.yaml; set %s=/path/to/envoy to run these cases against a real Envoy", envoyBinaryEnv)
		return ""
	}
	t.Logf("Envoy: %s=%s", envoyBinaryEnv, bin)
	return bin
}

// startRealEnvoy starts the binary so.envoyBinary names with the shipped
// envoy.yaml, rendered for this stack: listener and admin on loopback
// ports the kernel picks, ext_proc to signer, OCI at upstream. It returns
// the listener's URL; t.Cleanup stops the process and, when the test
// failed, copies Envoy's log into the test log.
func startRealEnvoy(t *testing.T, so stackOptions, signer, upstream string) string {
	t.Helper()
	if so.envoy != nil {
		t.Fatal("stackOptions.envoy configures the stand-in: a real Envoy runs envoy.yaml as shipped")
	}
	bs := renderShipped(t, envoyconfig.Endpoints{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Signer: signer, Upstream: upstream})
	p, err := startEnvoyProcess(so.envoyBinary, bs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("Envoy: %v", err)
		}
		if t.Failed() {
			t.Logf("Envoy's log:\n%s", p.log.String())
		}
	})
	t.Logf("Envoy %s (%s) listening on %s, admin on %s", so.envoyBinary, p.version, p.url, p.admin)
	return p.url
}

// envoyProcess is an Envoy started by startEnvoyProcess.
type envoyProcess struct {
	url     string // "http://127.0.0.1:port", the listener
	admin   string // "127.0.0.1:port"
	version string // what --version printed
	log     *syncBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startupGuard only bounds a hang (a binary that never gets ready): a
// working Envoy is ready in well under a second.
const startupGuard = time.Minute

// envoyArgs is the command line, in Envoy's own option names
// (source/server/options_impl.cc OptionsImpl::OptionsImpl, TCLAP):
// --use-dynamic-base-id picks an unused base ID for the shared memory of
// hot restart, so Envoys of parallel runs on one host never collide, and
// --admin-address-path writes the admin address, which, like the
// listener's, is on a port the kernel picked (port 0).
func envoyArgs(config, adminAddressPath string) []string {
	return []string{"--config-path", config, "--use-dynamic-base-id", "--admin-address-path", adminAddressPath, "--log-level", "info"}
}

// startEnvoyProcess writes bs where dir says, starts bin with it, and
// waits until Envoy's admin /ready answers LIVE; then it asks the admin
// interface which port the listener got. On an error nothing is left
// running, and the error holds Envoy's log.
func startEnvoyProcess(bin string, bs *bootstrapv3.Bootstrap, dir string) (*envoyProcess, error) {
	listeners := bs.GetStaticResources().GetListeners()
	if len(listeners) == 0 {
		return nil, errors.New("the Envoy config has no listener to send to")
	}
	version, err := envoyVersion(bin)
	if err != nil {
		return nil, err
	}
	// JSON, as Envoy reads a config path ending in .json.
	cfg, err := protojson.MarshalOptions{Multiline: true}.Marshal(bs)
	if err != nil {
		return nil, err
	}
	cfgPath, adminPath := filepath.Join(dir, "envoy.json"), filepath.Join(dir, "admin-address")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	p := &envoyProcess{version: version, log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, envoyArgs(cfgPath, adminPath)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Envoy %s: %w", bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := p.awaitReady(adminPath, listeners[0].GetName()); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("Envoy %s: %w\nEnvoy's log:\n%s", bin, err, p.log.String())
	}
	return p, nil
}

// envoyVersion runs bin --version (TCLAP prints "envoy  version: <sha>/<version>/...").
func envoyVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startupGuard)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	v := strings.TrimSpace(string(out))
	if err != nil || !strings.Contains(v, "version:") {
		return "", fmt.Errorf("%s --version: %v: %q: is %s=%s an Envoy binary?", bin, err, v, envoyBinaryEnv, bin)
	}
	return v, nil
}

// awaitReady waits for the admin address file, then for /ready to answer
// 200 (Envoy's server state LIVE: listeners and clusters initialised,
// the signer cluster's first health check done), then reads the
// listener's port from /listeners.
func (p *envoyProcess) awaitReady(adminPath, listener string) error {
	guard := time.NewTimer(startupGuard)
	defer guard.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for {
		if p.admin == "" {
			p.admin = readAdminAddress(adminPath)
		} else if ready, err := adminReady(client, p.admin); err != nil {
			return err
		} else if ready {
			url, err := listenerURL(client, p.admin, listener)
			p.url = url
			return err
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		case <-guard.C:
			return fmt.Errorf("not ready within %v (admin address %q)", startupGuard, p.admin)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readAdminAddress reads what --admin-address-path holds once it is
// whole: "127.0.0.1:port".
func readAdminAddress(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	a := strings.TrimSpace(string(b))
	if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
		return ""
	}
	return a
}

// adminReady asks /ready: 200 once LIVE, 503 before (the body names the
// state). A connection error is not yet ready.
func adminReady(client *http.Client, admin string) (bool, error) {
	resp, err := client.Get("http://" + admin + "/ready")
	if err != nil {
		return false, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusServiceUnavailable:
		return false, nil
	}
	return false, fmt.Errorf("admin /ready answered %s", resp.Status)
}

// listenerURL finds the port the kernel gave the listener named name in
// admin /listeners?format=json (admin.v3.Listeners: "If a listener was
// configured to listen on port 0, then this address has the port that
// was allocated by the OS").
func listenerURL(client *http.Client, admin, name string) (string, error) {
	resp, err := client.Get("http://" + admin + "/listeners?format=json")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var ls adminv3.Listeners
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ls); err != nil {
		return "", fmt.Errorf("admin /listeners: %w: %s", err, b)
	}
	for _, l := range ls.GetListenerStatuses() {
		if sa := l.GetLocalAddress().GetSocketAddress(); l.GetName() == name && sa.GetPortValue() != 0 {
			return fmt.Sprintf("http://%s", net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))), nil
		}
	}
	return "", fmt.Errorf("admin /listeners has no bound listener %q: %s", name, b)
}

// stop ends Envoy as an operator does (SIGTERM: Envoy shuts down at once)
// and, should it not exit, kills it. It reports a process that had
// already exited on its own: Envoy died during the test.
func (p *envoyProcess) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("exited before it was stopped: %v", p.waitErr)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("SIGTERM: %v, want a clean exit", p.waitErr)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("did not exit on SIGTERM within 10s; killed")
	}
}

// syncBuffer is Envoy's log: written by the process's output copiers,
// read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
