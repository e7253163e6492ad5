package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/intercept"
	"github.com/ocisigner/ocisigner/signer"
)

// HTTPS interception (serve --intercept): ocisigner is a certificate
// authority and Envoy's SDS server, on the ext_proc port, so that Envoy's
// signer cluster reaches both. Envoy terminates a client's CONNECT, asks
// SDS for a certificate for the SNI, and runs the decrypted requests
// through the signing filter (docs/intercept.md).

// caFlags locate the interception CA; serve and ca share them.
type caFlags struct {
	stateDir string
	caCert   string
	caKey    string
}

// register adds --state-dir and --ca-cert, and --ca-key when withKey (the
// ca command reads the certificate only).
func (f *caFlags) register(fs *flag.FlagSet, withKey bool) {
	fs.StringVar(&f.stateDir, "state-dir", "", "folder the interception CA is generated into on first start and kept in (ca.pem 0644, ca-key.pem 0600); default $XDG_STATE_HOME/ocisigner, else ~/.local/state/ocisigner (the shipped compose file uses /var/lib/ocisigner on a volume)")
	fs.StringVar(&f.caCert, "ca-cert", "", "use this CA certificate (PEM, with critical name constraints) instead of the one in --state-dir; with --ca-key")
	if withKey {
		fs.StringVar(&f.caKey, "ca-key", "", "the --ca-cert's private key (unencrypted PEM, mode 0600)")
	}
}

// check refuses half a CA.
func (f *caFlags) check() error {
	if (f.caCert == "") != (f.caKey == "") {
		return errors.New("--ca-cert and --ca-key go together: give both, or neither to use the CA in --state-dir")
	}
	return nil
}

// dir is the state directory: the flag, else the XDG state home.
func (f *caFlags) dir(getenv environ) (string, error) {
	switch {
	case f.stateDir != "":
		return f.stateDir, nil
	case getenv.get("XDG_STATE_HOME") != "":
		return filepath.Join(getenv.get("XDG_STATE_HOME"), "ocisigner"), nil
	case getenv.get("HOME") != "" && getenv.get("HOME") != "/":
		return filepath.Join(getenv.get("HOME"), ".local", "state", "ocisigner"), nil
	}
	return "", errors.New("no state directory: set --state-dir (OCISIGNER_STATE_DIR), XDG_STATE_HOME or HOME")
}

// certPath is the CA certificate's file.
func (f *caFlags) certPath(getenv environ) (string, error) {
	if f.caCert != "" {
		return f.caCert, nil
	}
	dir, err := f.dir(getenv)
	return filepath.Join(dir, intercept.CertFileName), err
}

// interceptOptions are serve's interception flags.
type interceptOptions struct {
	enabled  bool
	ca       caFlags
	leafTTL  time.Duration
	maxNames int
	// allowMinting lifts the refusal of credential-minting calls, in every
	// mode (not only intercepted ones).
	allowMinting bool

	clock intercept.Clock // tests only: leaves are minted and rotated by it
}

func (o *interceptOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.enabled, "intercept", false, "HTTPS interception: serve Envoy's on-demand certificates (delta SDS) on the ext_proc port, minted by a local name-constrained CA, so that clients with HTTPS_PROXY and the CA need no other change (docs/intercept.md)")
	o.ca.register(fs, true)
	fs.DurationVar(&o.leafTTL, "intercept-leaf-ttl", intercept.DefaultLeafTTL, "how long a minted certificate is valid; it is replaced two thirds in (at most "+intercept.MaxLeafTTL.String()+")")
	fs.IntVar(&o.maxNames, "intercept-max-names", intercept.DefaultMaxNames, "most host names with a live certificate; a new one beyond it evicts the least recently used")
	fs.BoolVar(&o.allowMinting, "allow-credential-minting", false, "sign requests that mint credentials from the gateway's identity (API keys, auth tokens, customer secret keys, sessions, pre-authenticated requests...); refused by default in every mode")
}

// interception is serve's running CA and SDS.
type interception struct {
	ca      *intercept.CA
	sds     *intercept.SDS
	certPEM []byte
}

// startInterception loads or creates the CA and registers the SDS on g.
// The CA's constraints cover the OCI realm domains and every --allow-host
// that names a host (an IP cannot be intercepted: the CA excludes them).
func startInterception(o *serveOptions, getenv environ, log *slog.Logger, m *metrics, g grpc.ServiceRegistrar) (*interception, error) {
	io := &o.icpt
	if !io.enabled {
		secretv3.RegisterSecretDiscoveryServiceServer(g, &interceptionOff{log: log})
		return nil, nil
	}
	if err := io.ca.check(); err != nil {
		return nil, err
	}
	hosts, err := extproc.NewHostPolicy(o.allowHosts)
	if err != nil {
		return nil, err
	}
	clock := io.clock
	if clock == nil {
		clock = intercept.SystemClock
	}
	ca, where, err := loadCA(io.ca, interceptPatterns(o.allowHosts), getenv, clock.Now(), log)
	if err != nil {
		return nil, err
	}
	im := newInterceptMetrics(m.reg)
	sds, err := intercept.NewSDS(intercept.Config{
		CA: ca, Allow: allowFor(hosts), Clock: clock, LeafTTL: io.leafTTL, MaxNames: io.maxNames,
		Observer: im, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	im.watch(sds)
	sds.Register(g)
	log.Info("HTTPS interception on: serving certificates over delta SDS", "ca", ca, "ca_cert", where,
		"leaf_ttl", io.leafTTL, "max_names", io.maxNames)
	return &interception{ca: ca, sds: sds, certPEM: ca.CertPEM()}, nil
}

// close ends the SDS streams (Envoy keeps the certificates it has). A nil
// interception is off.
func (ic *interception) close() {
	if ic != nil {
		ic.sds.Close()
	}
}

// loadCA reads the operator's CA, or the one in the state directory,
// minting it on first start. It returns where the certificate is.
func loadCA(f caFlags, patterns []string, getenv environ, now time.Time, log *slog.Logger) (*intercept.CA, string, error) {
	if f.caCert != "" {
		ca, err := intercept.Load(f.caCert, f.caKey)
		if err != nil {
			return nil, "", err
		}
		if err := ca.Covers(patterns); err != nil {
			// Issue still mints only what the constraints permit: names
			// outside them fail their handshake.
			log.Warn("the interception CA does not cover every host interception serves; those handshakes will fail", "error", err.Error())
		}
		return ca, f.caCert, nil
	}
	dir, err := f.dir(getenv)
	if err != nil {
		return nil, "", err
	}
	ca, err := intercept.LoadOrCreate(dir, patterns, now)
	return ca, filepath.Join(dir, intercept.CertFileName), err
}

// interceptPatterns are the --allow-host patterns a CA can be constrained
// to: those naming hosts or domains, not IP addresses.
func interceptPatterns(allowHosts []string) []string {
	var out []string
	for _, p := range allowHosts {
		if a, err := signer.ParseAuthority(strings.TrimSpace(p)); err == nil && a.IP {
			continue
		}
		out = append(out, p)
	}
	return out
}

// allowFor is the SDS policy: a name that looks like an OCI API endpoint,
// or one an --allow-host pattern names for port 443. The signer's own host
// check then applies to every request on the connection.
func allowFor(hosts *extproc.HostPolicy) func(string) error {
	return func(name string) error {
		err := intercept.LooksLikeOCIEndpoint(name)
		if err == nil || signer.IsRealmHost(name) {
			return err
		}
		if hosts.Allowed(signer.Authority{Host: name, Port: "443"}) {
			return nil
		}
		return err
	}
}

// caHandler serves the CA certificate on the admin port: the same bytes
// `ocisigner ca` prints.
func (s *service) caHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.icpt == nil {
			http.Error(w, "HTTPS interception is off (serve --intercept)\n", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.icpt.certPEM)
	}
}

// openInterception is newService's step for interception: a failure
// closes what newService opened before it.
func (s *service) openInterception(o *serveOptions, getenv environ) error {
	var err error
	if s.icpt, err = startInterception(o, getenv, s.log, s.metrics, s.grpc); err != nil {
		return fmt.Errorf("interception: %w", err)
	}
	return nil
}

// isCAError reports a CA that cannot be used as configured: a
// configuration error (exit 3), like an unusable key file.
func isCAError(err error) bool {
	return errors.Is(err, intercept.ErrCA) || errors.Is(err, intercept.ErrConstraints) || errors.Is(err, intercept.ErrInvalidDomain)
}

// interceptProbeTimeout bounds client-config's wait for the profile's
// region.
const interceptProbeTimeout = 15 * time.Second

// regionOf is the region the gateway's default profile signs for.
func regionOf(ctx context.Context, cf *credentialFlags, getenv environ) (signer.Region, error) {
	if cf.region != "" {
		return signer.ParseRegion(string(cf.region))
	}
	store, err := cf.open(getenv, discardLogger())
	if err != nil {
		return signer.Region{}, err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(ctx, interceptProbeTimeout)
	defer cancel()
	c, err := store.Source(cf.profileName(getenv)).Credentials(ctx)
	if err != nil {
		return signer.Region{}, err
	}
	return signer.ParseRegion(c.Region)
}

// interceptionOff answers Envoy's certificate requests while interception
// is off: each name is removed at once, so that a client's handshake fails
// with an alert instead of waiting for the connect timeout, and the log
// says why (once a minute at most: names are the client's choice).
type interceptionOff struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	log    *slog.Logger
	mu     sync.Mutex
	logged time.Time
}

// DeltaSecrets removes every name subscribed, then ends the stream, as
// intercept.SDS does once a stream it removed names on holds none: Envoy
// drops a removed name's subscription, so nothing more comes on it (and a
// stream left open would hold up a graceful stop).
func (o *interceptionOff) DeltaSecrets(srv grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	req, err := srv.Recv()
	if err != nil {
		return nil
	}
	for i, name := range req.GetResourceNamesSubscribe() {
		o.warn()
		if err := srv.Send(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: intercept.SecretTypeURL, Nonce: strconv.Itoa(i + 1), RemovedResources: []string{name}}); err != nil {
			return err
		}
	}
	return nil
}

func (o *interceptionOff) warn() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Since(o.logged) < time.Minute {
		return
	}
	o.logged = time.Now()
	o.log.Warn("Envoy asked for a certificate for an intercepted connection, but HTTPS interception is off: the client's handshake fails; start ocisigner serve with --intercept (OCISIGNER_INTERCEPT=true) to serve them")
}
