package intercept

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SecretTypeURL is the type of every resource the SDS serves. Envoy drops a
// delta response whose type_url matches none of its subscriptions, without
// a NACK (new_grpc_mux_impl.cc, NewGrpcMuxImpl::onDiscoveryResponse:
// "Dropping received DeltaDiscoveryResponse ... for non-existent
// subscription"), so a wrong one would leave the handshake waiting; and it
// NACKs a response whose resources' Any type differs from it
// (delta_subscription_state.cc, DeltaSubscriptionState::handleGoodResponse).
const SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// NoSNIName is the name to give the sni certificate mapper as its
// default_value, the name Envoy asks for when a client sends no SNI
// (cert_mappers/sni/config.cc, SNIMapper::deriveFromClientHello). It lies
// under .invalid (RFC 6761), so no policy ever mints for it and such a
// handshake fails at once. Never "*": in delta xDS that is the wildcard
// subscription.
const NoSNIName = "no-sni.ocisigner.invalid"

// Defaults of Config.
const (
	DefaultLeafTTL             = 30 * time.Minute
	DefaultMaxNames            = 1024
	DefaultMintsPerSecond      = 20
	DefaultMintBurst           = 100
	DefaultFirstRequestTimeout = 10 * time.Second
)

// Config configures an SDS.
type Config struct {
	CA *CA // required
	// Allow decides which names get a leaf; it receives the name lower-cased
	// and must be safe for concurrent use. nil means LooksLikeOCIEndpoint.
	// The CA's own constraints apply as well, whatever Allow says.
	Allow func(name string) error
	Clock Clock // nil: SystemClock
	// LeafTTL is how long a leaf is valid after it is minted, at most
	// MaxLeafTTL. A leaf is replaced on every stream that holds it once
	// two thirds of its TTL have passed, and never sent in its last third.
	LeafTTL time.Duration
	// MaxNames bounds the names with a live leaf. A new name beyond it
	// evicts the least recently subscribed one, whose streams are sent
	// removed_resources. SDS sees subscriptions, not handshakes: a name in
	// use that Envoy lost is subscribed again at its next handshake.
	MaxNames int
	// MaxStreams bounds the streams served at once; a stream beyond it has
	// its names refused (ReasonOverloaded). 0 means 2*MaxNames+64: Envoy's
	// selector opens one stream per name.
	MaxStreams int
	// MintsPerSecond and MintBurst rate-limit leaves for new names (a token
	// bucket); a name over the limit is refused with removed_resources, so
	// that the handshake fails rather than waits. Rotations, and names
	// Envoy already holds a leaf for (initial_resource_versions on a new
	// stream), are not limited: both are bounded by MaxNames.
	MintsPerSecond float64
	MintBurst      int
	// FirstRequestTimeout ends a stream that sends no request; Envoy sends
	// its subscription as soon as the stream is open.
	FirstRequestTimeout time.Duration
	Observer            Observer     // nil: none
	Logger              *slog.Logger // nil: discard
}

// EventKind says what an Event reports.
type EventKind uint8

// Kinds of Event.
const (
	EventMinted  EventKind = iota + 1 // a leaf for a newly subscribed name
	EventRotated                      // a leaf replaced before it expired
	EventRefused                      // a name answered with removed_resources; Reason says why
	EventEvicted                      // a live name dropped; Reason says why
	EventNACK                         // Envoy rejected a leaf; its name is evicted
)

func (k EventKind) String() string {
	switch k {
	case EventMinted:
		return "minted"
	case EventRotated:
		return "rotated"
	case EventRefused:
		return "refused"
	case EventEvicted:
		return "evicted"
	case EventNACK:
		return "nack"
	}
	return "unknown"
}

// Reasons of EventRefused and EventEvicted: a closed set, for metric labels.
const (
	ReasonInvalidName  = "invalid_name" // not a DNS host name ("*", empty, too long)
	ReasonPolicy       = "policy"       // Allow or the CA's constraints refused it
	ReasonRateLimited  = "rate_limited"
	ReasonOverloaded   = "overloaded" // the stream was over MaxStreams
	ReasonMintFailed   = "mint_failed"
	ReasonCapacity     = "capacity" // evicted for a new name beyond MaxNames
	ReasonUnsubscribed = "unsubscribed"
	ReasonNACK         = "nack"
)

// Event is one thing the SDS did, for metrics and logs.
type Event struct {
	Kind      EventKind
	Name      string // the name Envoy asked for, capped in length
	Reason    string // for EventRefused and EventEvicted
	LiveNames int    // names with a live leaf, after the event
	Streams   int    // streams served, after the event
}

// Observer receives Events. It is called with the SDS's lock held: it must
// be cheap and must not call the SDS.
type Observer interface {
	Observe(Event)
}

// Stats is a snapshot of the SDS's bounded state.
type Stats struct {
	LiveNames int
	Streams   int
}

// SDS is Envoy's secret discovery service for on-demand certificates,
// delta xDS only. Register it on the gRPC server Envoy's signer cluster
// reaches; Close ends it.
//
// It implements DeltaSecrets on the generated envoy/ types rather than
// with go-control-plane's server and caches: what it must do is answer
// each name as it is asked for (mint, or refuse with removed_resources),
// while those caches serve a snapshot and say nothing for a name they
// lack (LinearCache leaves such a watch open: Envoy's handshake would wait
// for its transport_socket_connect_timeout, as the selector's integration
// test ListenerConnectTimeout shows). A custom cache behind their server
// would be as much code as the stream itself, add a module, and still
// need the rotation, eviction and caps below.
//
// Envoy's side of the bounds: on 1.37 to 1.40 the selector keeps every
// name it was ever asked for until SDS removes it (the v1.40 API of
// on_demand_secret has no max_secrets or cache_idle_timeout; later Envoy
// adds both), so MaxNames here bounds Envoy's certificates too.
type SDS struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	cfg     Config
	clock   Clock
	log     *slog.Logger
	version string // prefix of every resource version: unique per process

	mu      sync.Mutex
	live    map[string]*entry
	lru     *list.List // of *entry, most recently subscribed first
	streams int
	bucket  bucket
	minted  atomic.Uint64

	wake      chan struct{}
	done      chan struct{}
	swept     sync.WaitGroup
	closeOnce sync.Once
}

// NewSDS checks cfg, fills in its defaults and starts the rotation loop.
func NewSDS(cfg Config) (*SDS, error) {
	if cfg.CA == nil {
		return nil, errors.New("intercept: Config.CA is required")
	}
	if cfg.Allow == nil {
		cfg.Allow = LooksLikeOCIEndpoint
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock
	}
	if cfg.LeafTTL == 0 {
		cfg.LeafTTL = DefaultLeafTTL
	}
	if cfg.LeafTTL < time.Second || cfg.LeafTTL > MaxLeafTTL {
		return nil, fmt.Errorf("intercept: a leaf TTL of %s is outside [1s, %s]", cfg.LeafTTL, MaxLeafTTL)
	}
	if cfg.MaxNames == 0 {
		cfg.MaxNames = DefaultMaxNames
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 2*cfg.MaxNames + 64
	}
	if cfg.MintsPerSecond == 0 {
		cfg.MintsPerSecond = DefaultMintsPerSecond
	}
	if cfg.MintBurst == 0 {
		cfg.MintBurst = DefaultMintBurst
	}
	if cfg.MaxNames < 1 || cfg.MaxStreams < 1 || cfg.MintsPerSecond < 0 || cfg.MintBurst < 1 {
		return nil, errors.New("intercept: MaxNames, MaxStreams and MintBurst must be positive, MintsPerSecond not negative")
	}
	if cfg.FirstRequestTimeout == 0 {
		cfg.FirstRequestTimeout = DefaultFirstRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &SDS{
		cfg: cfg, clock: cfg.Clock, log: cfg.Logger,
		version: strconv.FormatInt(time.Now().UnixNano(), 36),
		live:    map[string]*entry{}, lru: list.New(),
		bucket: bucket{rate: cfg.MintsPerSecond, burst: float64(cfg.MintBurst)},
		wake:   make(chan struct{}, 1), done: make(chan struct{}),
	}
	s.swept.Add(1)
	go s.rotateLoop()
	return s, nil
}

// Register adds the service to g (a *grpc.Server), beside whatever else g
// serves: ocisigner's ext_proc port, so that Envoy's signer cluster
// reaches both.
func (s *SDS) Register(g grpc.ServiceRegistrar) { secretv3.RegisterSecretDiscoveryServiceServer(g, s) }

// Close stops the rotation loop and ends every open stream with
// UNAVAILABLE, so that Envoy reconnects (to the next instance).
func (s *SDS) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.swept.Wait()
}

// Stats returns the live names and open streams.
func (s *SDS) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{LiveNames: len(s.live), Streams: s.streams}
}

// errSotW is the answer to state-of-the-world SDS. The selector would
// subscribe over it and wait for an answer that could not say no: SotW
// can only refuse with an empty update, which Envoy's SdsApi rejects
// (sds_api.cc, SdsApi::validateUpdateSize: "Missing SDS resources"), a NACK
// after which the handshake waits until its connect timeout.
var errSotW = status.Error(codes.Unimplemented,
	"ocisigner serves secrets over delta xDS only: set api_type: DELTA_GRPC in the on-demand selector's config_source "+
		"(state-of-the-world SDS cannot refuse a name, so a refused handshake would hang)")

// StreamSecrets refuses state-of-the-world SDS.
func (s *SDS) StreamSecrets(grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	return errSotW
}

// FetchSecrets refuses state-of-the-world SDS.
func (s *SDS) FetchSecrets(context.Context, *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	return nil, errSotW
}

// observeLocked reports an event; s.mu is held.
func (s *SDS) observeLocked(kind EventKind, name, reason string) {
	if s.cfg.Observer == nil {
		return
	}
	s.cfg.Observer.Observe(Event{Kind: kind, Name: capName(name), Reason: reason, LiveNames: len(s.live), Streams: s.streams})
}

// bucket is a token bucket on the SDS's clock; s.mu guards it.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *bucket) take(now time.Time) bool {
	switch {
	case b.last.IsZero():
		b.tokens, b.last = b.burst, now
	case now.After(b.last):
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
