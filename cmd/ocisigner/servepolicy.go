package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
)

// policyOptions are serve's flags for a shared gateway (docs/shared-gateway.md).
type policyOptions struct {
	policyFile    string
	keysFile      string
	envoyIdentity stringList
}

func (o *policyOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.policyFile, "policy", "", "policy file (YAML): who may sign as which profile, for which services and methods (docs/shared-gateway.md); read at start, reloaded when it changes. Unset: every caller signs as before")
	fs.StringVar(&o.keysFile, "keys", "", "gateway keys file (names and SHA-256 hashes, from ocisigner keys add); reloaded when it changes: a removed line revokes its key. Needs --policy")
	fs.Var(&o.envoyIdentity, "envoy-identity-header", "a header that names a caller and that Envoy sets itself (e.g. x-forwarded-client-cert with forward_client_cert_details SANITIZE_SET): requests carrying it are not refused as forged; ocisigner never reads a caller from it; repeatable")
}

// check is what parseCommand runs once the flags are in.
func (o *policyOptions) check() error {
	switch {
	case o.keysFile != "" && o.policyFile == "":
		return errors.New("--keys needs --policy: keys name callers, the policy says what they may do")
	case len(o.envoyIdentity) > 0 && o.policyFile == "":
		return errors.New("--envoy-identity-header needs --policy: without a policy no header is refused")
	}
	for _, h := range o.envoyIdentity {
		known := false
		for _, ih := range extproc.IdentityHeaders {
			known = known || ih == h
		}
		if !known {
			return fmt.Errorf("--envoy-identity-header %q: ocisigner refuses only %v; name one of those", h, extproc.IdentityHeaders)
		}
	}
	return nil
}

// errPolicyFiles marks a policy or keys file that cannot be used at start:
// the operator's to fix, exit 2, with the file and line.
var errPolicyFiles = errors.New("policy files")

// policyWatchers are the running watchers of --policy and --keys.
type policyWatchers struct {
	policy *policy.Watcher[policy.Policy]
	keys   *policy.Watcher[policy.Keys]
}

// openPolicy reads --policy and --keys, wired to the metrics and the log.
// Without --policy it returns nil: no policy, as before.
func (s *service) openPolicy(o policyOptions, log *slog.Logger) (*policyWatchers, error) {
	if o.policyFile == "" {
		return nil, nil
	}
	w := &policyWatchers{}
	s.metrics.policy = newPolicyMetrics(s.metrics.reg, func() *policy.Policy { return w.policy.Current() })
	opts := func(file string) []policy.Option {
		out := []policy.Option{policy.WithLogger(log), policy.WithOnReload(func(ev policy.ReloadEvent) { s.metrics.policy.reloaded(file, ev) })}
		if s.opts.clock != nil {
			out = append(out, policy.WithClock(s.opts.clock))
		}
		return out
	}
	var err error
	if w.policy, err = policy.WatchPolicy(o.policyFile, opts("policy")...); err != nil {
		return nil, fmt.Errorf("%w: --policy: %w", errPolicyFiles, err)
	}
	if o.keysFile != "" {
		if w.keys, err = policy.WatchKeys(o.keysFile, opts("keys")...); err != nil {
			return nil, fmt.Errorf("%w: --keys: %w", errPolicyFiles, err)
		}
	}
	log.Info("policy loaded", "file", o.policyFile, "rules", len(w.policy.Current().RuleNames()), "keys", len(w.keys.Current().Names()))
	return w, nil
}

// configure puts the watchers into the ext_proc configuration.
func (w *policyWatchers) configure(cfg *extproc.Config, o policyOptions) {
	if w == nil {
		return
	}
	cfg.Policy, cfg.EnvoyIdentityHeaders = w.policy, o.envoyIdentity
	if w.keys != nil {
		cfg.Keys = w.keys
	}
}

// run polls the files until ctx ends.
func (w *policyWatchers) run(ctx context.Context) {
	if w == nil {
		return
	}
	done := make(chan struct{})
	if w.keys != nil {
		go func() {
			defer close(done)
			w.keys.Run(ctx)
		}()
	} else {
		close(done)
	}
	w.policy.Run(ctx)
	<-done
}

// runPolicy polls the policy and keys files until the service stops.
func (s *service) runPolicy() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	s.policyW.run(ctx)
}
