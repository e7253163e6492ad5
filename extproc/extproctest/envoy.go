package extproctest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Envoy is a running stand-in: an HTTP/1.1 listener on 127.0.0.1, one gRPC connection to
// the processor and a pool of HTTP/1.1 connections to the upstream.
type Envoy struct {
	cfg    *settings
	ln     net.Listener
	srv    *http.Server
	conn   *grpc.ClientConn
	client extprocv3.ExternalProcessorClient
	stats  counters

	internal *internalListener // Config.Intercept's internal listener, or nil
	tlsLn    *tlsListener      // Config.DownstreamTLS's listener, or nil

	poolsMu     sync.Mutex
	pools       map[string]*upstreamPool // by "host:port" (and TLS server name and names)
	poolsClosed bool

	baseCtx context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup // handlers and every goroutine they start
	srvDone chan struct{}
}

// New dials the processor (lazily, as gRPC does; Envoy's cluster connects on first use too)
// and starts listening on 127.0.0.1:0.
func New(cfg Config) (*Envoy, error) {
	s, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(s.Processor,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Envoy's async gRPC client puts no limit on what it receives.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// Envoy tries a new connection for the next stream once the old one failed; grpc-go
		// would otherwise back off for up to two minutes and fail requests meanwhile. With
		// this backoff a request still fails fast within 200 ms of a failed attempt.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: s.ConnectTimeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("extproctest: dial processor %q: %w", s.Processor, err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("extproctest: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Envoy{
		cfg:     s,
		conn:    conn,
		client:  extprocv3.NewExternalProcessorClient(conn),
		pools:   map[string]*upstreamPool{},
		baseCtx: ctx,
		cancel:  cancel,
		srvDone: make(chan struct{}),
	}
	e.ln = downListener{Listener: tcp, dropContinue: s.Proxy100Continue}
	if s.DownstreamTLS != nil {
		e.tlsLn = newTLSListener(e, tcp, s.DownstreamTLS)
		e.ln = e.tlsLn
	}
	if s.Intercept != nil {
		if e.internal, err = newInternalListener(e); err != nil {
			cancel()
			tcp.Close()
			conn.Close()
			return nil, err
		}
	}
	e.srv = &http.Server{
		Handler:           e,
		MaxHeaderBytes:    maxHeadersBytes,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*innerConn); ok { // DownstreamTLS
				ctx = context.WithValue(ctx, connInfoKey{}, ic.info)
				return context.WithValue(ctx, downConnKey{}, ic.down)
			}
			return context.WithValue(ctx, downConnKey{}, c)
		},
	}
	go func() {
		defer close(e.srvDone)
		_ = e.srv.Serve(e.ln)
	}()
	return e, nil
}

// URL is "http://127.0.0.1:port" ("https://" with DownstreamTLS), the address clients
// send requests to.
func (e *Envoy) URL() string {
	if e.tlsLn != nil {
		return "https://" + e.ln.Addr().String()
	}
	return "http://" + e.ln.Addr().String()
}

// Addr is the listener's "127.0.0.1:port".
func (e *Envoy) Addr() string { return e.ln.Addr().String() }

// Stats returns a snapshot of the counters.
func (e *Envoy) Stats() Stats { return e.stats.snapshot() }

// Close stops listening, ends every request in flight (as an Envoy shutdown would) and
// returns once every goroutine the stand-in started has finished.
func (e *Envoy) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()

	e.cancel()
	err := e.srv.Close()
	<-e.srvDone
	if e.tlsLn != nil {
		e.tlsLn.wait()
	}
	if e.internal != nil {
		e.internal.close()
	}
	e.wg.Wait()
	if e.internal != nil {
		_ = e.internal.secrets.conn.Close()
	}
	e.poolsMu.Lock()
	e.poolsClosed = true
	for _, p := range e.pools {
		p.close()
	}
	e.poolsMu.Unlock()
	if cerr := e.conn.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// upstreamPool returns the connection pool for a request to addr with this :authority:
// one per address, and with UpstreamTLS one per server name and names to verify.
func (e *Envoy) upstreamPool(addr, authority string) *upstreamPool {
	if e.cfg.UpstreamTLS == nil {
		return e.pool(addr, addr, nil)
	}
	tc, key := e.cfg.UpstreamTLS.upstreamTLSFor(addr, authority)
	return e.pool(key, addr, tc)
}

// pool returns the connection pool named key, to addr (over TLS with tc when it is
// not nil). After Close it returns a closed pool, whose connections fail.
func (e *Envoy) pool(key, addr string, tc *tls.Config) *upstreamPool {
	e.poolsMu.Lock()
	defer e.poolsMu.Unlock()
	p, ok := e.pools[key]
	if !ok {
		p = newUpstreamPool(addr)
		p.tls = tc
		if e.poolsClosed {
			p.close()
		}
		e.pools[key] = p
	}
	return p
}

// goTracked runs f on a goroutine Close waits for. Only call it while a handler is running
// (or from a goroutine started this way), so the WaitGroup never grows after Close waits.
func (e *Envoy) goTracked(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

func (e *Envoy) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

func (e *Envoy) logf(format string, args ...any) {
	if e.cfg.Logf != nil {
		e.cfg.Logf(format, args...)
	}
}

// ServeHTTP is one downstream request: the connection manager, the ext_proc filter and the
// router, in that order. It is exported because Envoy is the listener's http.Handler; tests
// send requests to URL.
func (e *Envoy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.enter() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer e.wg.Done()
	e.stats.requests.Add(1)
	f := newFilter(e, w, r)
	defer f.cleanup()
	f.serve()
}
