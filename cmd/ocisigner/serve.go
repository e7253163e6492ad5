package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
)

// Default addresses: loopback, since whoever reaches the ext_proc port gets
// signatures (and the admin port tells about the profiles). The shipped
// Compose, Kubernetes and GitHub Actions files set the addresses Envoy and
// the kubelet reach; the admin port is not Envoy's 9901, so both fit in one
// pod or network namespace.
const (
	DefaultListen = "127.0.0.1:50051"
	DefaultAdmin  = "127.0.0.1:9465"
)

type serveOptions struct {
	creds          credentialFlags
	listen         string
	admin          string
	allowHosts     stringList
	profileHeader  string
	headerOverride bool
	profiles       string
	aliases        stringList
	genaiCompart   string
	genaiProject   string
	maxBodyBytes   int64
	logLevel       string
	logFormat      string
	probeInterval  time.Duration
	probeEndpoint  urlFlag
	drainTimeout   time.Duration
	healthInterval time.Duration
	maxStreams     int
	maxConnStreams uint
	firstMessage   time.Duration
	idleTimeout    time.Duration
	discloseErrors bool
	rsaBackend     string
	policy         policyOptions
	icpt           interceptOptions // intercept.go

	clock   credentials.Clock              // tests only: the time credentials are judged by and refreshed on
	observe func(credentials.RefreshEvent) // tests only: told of each background fetch, after the metrics
}

func (o *serveOptions) register(fs *flag.FlagSet) {
	o.creds.register(fs)
	fs.StringVar(&o.listen, "listen", DefaultListen, "ext_proc gRPC address: host:port, or unix:/path/to.sock (anyone who reaches it gets signatures: widen it only where Envoy alone can reach it)")
	fs.StringVar(&o.admin, "admin", DefaultAdmin, "admin HTTP address for /healthz, /readyz and /metrics; empty disables it")
	fs.Var(&o.allowHosts, "allow-host", "also sign for hosts matching this pattern (host, host:port or *.domain); repeatable")
	fs.StringVar(&o.profileHeader, "profile-header", extproc.DefaultProfileHeader, `request header (and gRPC metadata key of a route's pin) that selects a profile per request; "" or none turns per-request selection off`)
	fs.BoolVar(&o.headerOverride, "profile-header-overrides-route", false, "let the profile header choose another profile than the one a route pins (by default the route's pin wins)")
	fs.StringVar(&o.profiles, "profiles", "", "comma-separated profiles ocisigner signs for, however a request chooses; empty: all of the config's")
	fs.Var(&o.aliases, "alias", "add or replace a service alias for gateway-addressed requests: NAME=TEMPLATE with {region} and {domain}, e.g. myai=inference.generativeai.{region}.oci.{domain}; repeatable")
	fs.StringVar(&o.genaiCompart, "genai-compartment", "", "compartment OCID for Generative AI requests that name none and whose route pins none (default: the profile's tenancy, the root compartment)")
	fs.StringVar(&o.genaiProject, "genai-project", "", "Generative AI project OCID (ocid1.generativeaiproject...) for /openai/v1 requests that send no OpenAI-Project and whose route names none (x-oci-genai-project)")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", extproc.DefaultMaxBodyBytes, "largest request body signed; larger ones get 413")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&o.probeInterval, "probe-interval", 0, "run the namespace probe this often and report it in /readyz and metrics; 0 disables")
	o.probeEndpoint = urlFlag{plainHTTP: loopback}
	fs.Var(&o.probeEndpoint, "probe-endpoint", "base URL the periodic probe uses instead of https://objectstorage.<region>.<realm domain>")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 20*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.DurationVar(&o.healthInterval, "health-interval", time.Second, "how often the default profile's credentials are checked for the gRPC health status")
	fs.IntVar(&o.maxStreams, "max-streams", extproc.DefaultMaxStreams, "most ext_proc streams served at once; more are refused (Envoy answers its status_on_error)")
	fs.UintVar(&o.maxConnStreams, "max-streams-per-conn", extproc.DefaultMaxStreamsPerConn, "most concurrent streams on one gRPC connection (Envoy opens another connection when one is full)")
	fs.DurationVar(&o.firstMessage, "first-message-timeout", extproc.DefaultFirstMessageTimeout, "end a stream whose request headers do not arrive within this long")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", extproc.DefaultIdleTimeout, "end a stream that sends no message for this long after its first (for a signed body: the client's whole upload; see --max-body-bytes)")
	fs.BoolVar(&o.discloseErrors, "disclose-errors", false, "put whole credential errors (file paths, the config's profile names) into refusals, not only into the log; for a gateway only its operator uses")
	fs.StringVar(&o.rsaBackend, "rsa-backend", signer.BackendAuto, "RSA implementation: auto (OpenSSL when built with cgo, else Go), openssl or go")
	o.policy.register(fs)
	o.icpt.register(fs)
}

// parseServe reads serve's flags and environment.
func parseServe(args []string, getenv environ, stdout, stderr io.Writer) (o serveOptions, exit int, ok bool) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o.register(fs)
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, o.creds.settle(getenv), o.policy.check, o.icpt.ca.check); !ok {
		return o, exit, false
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "profile-header" && o.profileHeader == "" {
			// --profile-header "" on the command line, or the variable set empty.
			o.profileHeader = profileHeaderOff
		}
	})
	return o, exitOK, true
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	o, exit, ok := parseServe(args, getenv, stdout, stderr)
	if !ok {
		return exit
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner serve:", err)
		return exitUsage
	}
	if _, err := o.extprocConfig(); err != nil {
		fmt.Fprintln(stderr, "ocisigner serve:", err)
		return exitUsage
	}
	if err := signer.SetBackend(o.rsaBackend); err != nil {
		fmt.Fprintln(stderr, "ocisigner serve: --rsa-backend:", err)
		return exitUsage
	}
	svc, err := newService(o, log, getenv)
	if errors.Is(err, errPolicyFiles) {
		// The operator's file to fix, with its line: said plainly.
		fmt.Fprintln(stderr, "ocisigner serve:", err)
		return exitUsage
	}
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		var se *signer.Error
		if errors.As(err, &se) || isCAError(err) {
			return exitConfig
		}
		return exitFailure
	}
	errc := svc.start()
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "timeout", o.drainTimeout)
		svc.shutdown(o.drainTimeout)
		return exitOK
	case err := <-errc:
		log.Error("server failed", "error", err.Error())
		svc.shutdown(0)
		return exitFailure
	}
}

// service is a running ocisigner: the ext_proc gRPC server, its health
// status, and the admin HTTP server.
type service struct {
	opts    serveOptions
	log     *slog.Logger
	profile string
	creds   *credentials.Store
	opened  atomic.Pointer[credentials.Store] // creds, for the metrics while it opens
	ext     *extproc.Server
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics
	refused *ociRefusals
	icpt    *interception // nil: interception off
	lis     net.Listener
	adminL  net.Listener
	admin   *http.Server
	probe   func(context.Context) probeResult
	policyW *policyWatchers // --policy and --keys; nil without a policy

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	lastProb *probeResult
	draining bool
}

func newService(o serveOptions, log *slog.Logger, getenv environ) (svc *service, err error) {
	s := &service{opts: o, log: log, profile: o.creds.profileName(getenv), stop: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeOpened()
		}
	}()
	// The metrics see the background fetches from the start: the store's
	// loop begins fetching while it opens.
	s.metrics = newMetrics(func() []string {
		if st := s.opened.Load(); st != nil {
			return st.Names()
		}
		return nil
	}, o.probeInterval > 0)
	s.refused = newOCIRefusals(s.metrics)
	// The policy first: a file to fix stops the start before any
	// credentials are fetched.
	if s.policyW, err = s.openPolicy(o.policy, log); err != nil {
		return nil, err
	}
	if err = s.openCredentials(o, getenv); err != nil {
		return nil, err
	}
	if err = s.newServer(o); err != nil {
		return nil, err
	}
	if s.lis, err = listen(o.listen); err != nil {
		return nil, err
	}
	if o.admin != "" {
		if s.adminL, err = net.Listen("tcp", o.admin); err != nil {
			return nil, fmt.Errorf("admin listener %s: %w", o.admin, err)
		}
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	if err = s.openInterception(&o, getenv); err != nil {
		return nil, err
	}
	return s, nil
}

// closeOpened closes what a start that failed half-way opened.
func (s *service) closeOpened() {
	if s.adminL != nil {
		s.adminL.Close()
	}
	if s.lis != nil {
		s.lis.Close()
	}
	if s.creds != nil {
		s.creds.Close()
	}
}

// openCredentials opens the store, with the metrics watching its fetches,
// and checks that the default profile is in it.
func (s *service) openCredentials(o serveOptions, getenv environ) error {
	var extra []credentials.Option
	if o.clock != nil {
		extra = append(extra, credentials.WithClock(o.clock))
	}
	extra = append(extra, credentials.WithObserver(func(ev credentials.RefreshEvent) {
		s.metrics.observeRefresh(ev)
		if o.observe != nil {
			o.observe(ev)
		}
	}))
	creds, err := o.creds.open(getenv, s.log, extra...)
	if err != nil {
		return err
	}
	s.opened.Store(creds)
	s.creds = creds
	if !slices.Contains(creds.Names(), s.profile) {
		// The exit-code table's 3: a default profile the config lacks is a
		// configuration error now, not a refusal of every request later.
		if _, err := creds.Source(s.profile).Credentials(context.Background()); err != nil {
			return err
		}
		return fmt.Errorf("profile %s is not in the config", s.profile)
	}
	return nil
}

// newServer builds the ext_proc service and its gRPC server.
func (s *service) newServer(o serveOptions) error {
	cfg, err := o.extprocConfig()
	if err != nil {
		return err
	}
	var now func() time.Time
	if o.clock != nil {
		now = o.clock.Now
	}
	cfg.Credentials, cfg.DefaultProfile, cfg.Logger, cfg.Clock, cfg.Observer = s.creds, s.profile, s.log, now, observers{s.metrics, s.refused}
	s.policyW.configure(&cfg, o.policy)
	if s.ext, err = extproc.New(cfg); err != nil {
		return err
	}
	s.grpc = grpc.NewServer(s.ext.ServerOptions()...)
	s.ext.Register(s.grpc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.probe = func(ctx context.Context) probeResult {
		return probe(ctx, probeParams{profile: s.profile, src: s.creds.Source(s.profile), endpoint: o.probeEndpoint.value,
			client: &http.Client{Timeout: 15 * time.Second}, now: time.Now})
	}
	return nil
}

// profileHeaderOff is the --profile-header value that turns per-request
// profile selection off (an empty value on the command line says the same).
const profileHeaderOff = "none"

// extprocConfig is the service's configuration from the flags, checked.
func (o *serveOptions) extprocConfig() (extproc.Config, error) {
	hosts, err := extproc.NewHostPolicy(o.allowHosts)
	if err != nil {
		return extproc.Config{}, err
	}
	cfg := extproc.Config{
		ProfileHeader:        o.profileHeader,
		HeaderOverridesRoute: o.headerOverride,
		Hosts:                hosts,
		MaxBodyBytes:         o.maxBodyBytes,
		MaxStreams:           o.maxStreams,
		MaxStreamsPerConn:    uint32(min(o.maxConnStreams, math.MaxUint32)),
		FirstMessageTimeout:  o.firstMessage,
		IdleTimeout:          o.idleTimeout,
		DiscloseErrors:       o.discloseErrors,
		GenAICompartment:     o.genaiCompart,
		GenAIProject:         o.genaiProject,

		AllowCredentialMinting: o.icpt.allowMinting,
	}
	if strings.EqualFold(o.profileHeader, profileHeaderOff) {
		cfg.NoProfileHeader, cfg.ProfileHeader = true, extproc.DefaultProfileHeader
	}
	if o.profiles != "" {
		for _, p := range strings.Split(o.profiles, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.Profiles = append(cfg.Profiles, p)
			}
		}
		if len(cfg.Profiles) == 0 {
			// Naming none must not mean "all": the operator meant to limit.
			return extproc.Config{}, fmt.Errorf("--profiles %q names no profile; list the profiles to sign for, e.g. --profiles PROD,TEST123, or leave it unset for all", o.profiles)
		}
	}
	byName := map[string]signer.Alias{}
	for _, a := range signer.Aliases() {
		byName[a.Name] = a
	}
	for _, spec := range o.aliases {
		a, err := signer.ParseAlias(spec)
		if err != nil {
			return extproc.Config{}, fmt.Errorf("--alias: %w", err)
		}
		byName[a.Name] = a
	}
	for _, a := range byName {
		cfg.Aliases = append(cfg.Aliases, a)
	}
	if o.genaiCompart != "" {
		if err := signer.CheckOCID(o.genaiCompart, "compartment", "tenancy"); err != nil {
			return extproc.Config{}, fmt.Errorf("--genai-compartment: %w", err)
		}
	}
	if o.genaiProject != "" {
		if err := signer.CheckOCID(o.genaiProject, "generativeaiproject"); err != nil {
			return extproc.Config{}, fmt.Errorf("--genai-project: %w", err)
		}
	}
	return cfg, cfg.Validate()
}

// listen opens the gRPC listener: TCP, or a unix socket with "unix:".
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		// A socket left by a previous run would make bind fail.
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// start serves until shutdown; the channel reports a server that failed.
func (s *service) start() <-chan error {
	errc := make(chan error, 2)
	s.checkHealth()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.healthLoop()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runPolicy()
	}()
	if s.opts.probeInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.probeLoop()
		}()
	}
	go func() {
		if err := s.grpc.Serve(s.lis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()
	if s.admin != nil {
		go func() {
			if err := s.admin.Serve(s.adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	attrs := []any{"listen", s.lis.Addr().String(), "profile", s.profile, "version", versionString(), "rsa", signer.Backend()}
	if s.adminL != nil {
		attrs = append(attrs, "admin", s.adminL.Addr().String())
	}
	serves := "every profile of the config"
	if len(s.ext.Profiles()) > 0 {
		serves = strings.Join(s.ext.Profiles(), ",")
	}
	attrs = append(attrs, "serves", serves, "profiles", s.profileSummary())
	s.log.Info("ocisigner serving", attrs...)
	return errc
}

// profileSummary names each profile the service signs for with its
// principal kind, masked keyId and expiry, or why it cannot sign: what an
// operator checks first when a request gets a 401. A profile whose
// credentials come from a service gets a few seconds; the loop keeps
// fetching it in the background meanwhile.
func (s *service) profileSummary() []string {
	names := s.creds.Names()
	out := make([]string, 0, len(names))
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := s.creds.Source(name).Credentials(ctx)
		cancel()
		var se *signer.Error
		switch {
		case err == nil:
			line := fmt.Sprintf("%s: %s %s", name, c.Kind, signer.MaskKeyID(c.KeyID)) + s.rsaNote(name, c)
			if exp := c.Expiry(); !exp.IsZero() {
				line += " expires " + exp.UTC().Format(time.RFC3339)
			}
			if r, err := signer.ParseRegion(c.Region); err == nil {
				if w := regionWarning(r); w != "" {
					line += " (" + w + ")"
				}
			}
			out = append(out, line)
		case errors.As(err, &se):
			out = append(out, fmt.Sprintf("%s: not usable (%s)", name, se.Kind.Error()))
			// The fix, every time: the background fetch's own warning may
			// or may not have come first (a caller that fetches first takes
			// its place).
			s.log.Warn("profile cannot sign", "profile", name, "error", err.Error())
		default:
			out = append(out, fmt.Sprintf("%s: not usable yet (%v)", name, err))
		}
	}
	return out
}

// rsaNote prepares a profile's key with the RSA backend, and says (on the
// start-up line, and in a warning) when the backend leaves the key to
// crypto/rsa: it signs, at about three times the CPU.
func (s *service) rsaNote(profile string, c *signer.Credentials) string {
	why := signer.Prepare(c.Key)
	if why == nil {
		return ""
	}
	s.log.Warn("profile's key signs with crypto/rsa", "profile", profile, "why", why.Error())
	return " (rsa: crypto/rsa: " + why.Error() + ")"
}

// shutdown drains: health goes NOT_SERVING so Envoy stops sending new
// streams, in-flight ones finish (up to timeout), then everything stops.
// Only the first call does anything; later ones return at once.
func (s *service) shutdown(timeout time.Duration) {
	s.stopOnce.Do(func() { s.drain(timeout) })
}

func (s *service) drain(timeout time.Duration) {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	close(s.stop)
	s.icpt.close() // SDS streams live as long as Envoy: GracefulStop would wait for them
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.log.Warn("drain timeout: stopping with requests in flight; Envoy answers them with its status_on_error")
		s.grpc.Stop()
		<-done
	}
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	s.wg.Wait()
	s.creds.Close()
}

// checkHealth sets the gRPC health status from the default profile: Envoy
// stops routing to a signer that cannot sign.
func (s *service) checkHealth() {
	st := healthpb.HealthCheckResponse_SERVING
	c, err := s.creds.Source(s.profile).Credentials(context.Background())
	if err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.metrics.setTokenExpiry(s.profile, c)
	prev, _ := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if prev == nil || prev.Status != st {
		if err != nil {
			s.log.Warn("default profile cannot sign: health NOT_SERVING", "profile", s.profile, "error", err.Error())
		} else {
			s.log.Info("default profile can sign: health SERVING", "profile", s.profile, "kind", string(c.Kind))
		}
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(extprocServiceName, st)
}

const extprocServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

func (s *service) healthLoop() {
	t := time.NewTicker(s.opts.healthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.checkHealth()
		}
	}
}

func (s *service) probeLoop() {
	t := time.NewTicker(s.opts.probeInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r := s.probe(ctx)
		cancel()
		s.recordProbe(r)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *service) recordProbe(r probeResult) {
	s.mu.Lock()
	s.lastProb = &r
	s.mu.Unlock()
	s.metrics.recordProbe(r)
	if r.OK {
		s.log.Info("namespace probe ok", "profile", r.Profile, "endpoint", r.Endpoint, "namespace", r.Namespace, "latency_ms", r.LatencyMS)
	} else {
		s.log.Warn("namespace probe failed", "profile", r.Profile, "endpoint", r.Endpoint, "status", r.Status, "error", r.Error)
	}
}
