package signer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// renewer serves credentials that a service issues (instance principal,
// OKE workload identity): the first call, or a call after expiry, waits for
// a token; before expiry a background loop renews it, and callers keep the
// current one meanwhile. Each renewal yields a whole Credentials (token and
// the session key it was issued for), swapped in at once.
type renewer struct {
	name  string
	fetch func(ctx context.Context) (*Credentials, error)
	opts  options

	cur atomic.Pointer[Credentials]
	mu  sync.Mutex // one fetch at a time

	start sync.Once
	kick  chan struct{} // new credentials: the loop plans the next renewal
	stop  chan struct{}
	done  chan struct{}
}

func newRenewer(name string, fetch func(context.Context) (*Credentials, error), o options) *renewer {
	return &renewer{name: name, fetch: fetch, opts: o, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Credentials implements Source.
func (r *renewer) Credentials(ctx context.Context) (*Credentials, error) {
	r.start.Do(func() { go r.loop() })
	if c := r.cur.Load(); c != nil && !c.Token.Expired(r.opts.clock()) {
		return c, nil
	}
	return r.renew(ctx, false)
}

// renew fetches new credentials unless another caller just did. With force,
// it fetches even when the current ones are valid (the background renewal).
func (r *renewer) renew(ctx context.Context, force bool) (*Credentials, error) {
	before := r.cur.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cur.Load(); c != nil && c != before && !c.Token.Expired(r.opts.clock()) {
		return c, nil // renewed while this call waited
	}
	if c := r.cur.Load(); !force && c != nil && !c.Token.Expired(r.opts.clock()) {
		return c, nil
	}
	c, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	c.Refreshed = r.opts.clock()
	r.cur.Store(c)
	select {
	case r.kick <- struct{}{}:
	default:
	}
	r.opts.log.Info("token obtained", "principal", string(c.Kind), "name", r.name, "expires", c.Token.Expiry.UTC(), "key_id", MaskKeyID(c.KeyID))
	return c, nil
}

func (r *renewer) loop() {
	defer close(r.done)
	var sched schedule
	for {
		wait := poll
		now := r.opts.clock()
		if c := r.cur.Load(); c != nil {
			at := sched.next(c.Token, r.opts.refreshMargin)
			if !at.After(now) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := r.renew(ctx, true)
				cancel()
				if err != nil {
					retryIn := sched.failed(r.opts.clock())
					r.opts.log.Warn("token renewal failed; the current token stays in use until it expires",
						"name", r.name, "attempt", sched.failures, "retry_in", retryIn, "expires", c.Token.Expiry.UTC(), "error", err.Error())
				} else {
					sched.succeeded()
				}
				continue
			}
			wait = min(wait, at.Sub(now))
		}
		if !sleep(wait, r.stop, r.kick) {
			return
		}
	}
}

// sleep waits d, or less if kick fires; it reports false when stop closes.
func sleep(d time.Duration, stop <-chan struct{}, kick <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-kick:
	case <-t.C:
	}
	return true
}

// newSessionKey makes the in-memory RSA-2048 key a federated token is bound
// to, with its public half as PEM for the request that asks for the token.
func newSessionKey() (*rsa.PrivateKey, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// bindToken reads a token a service issued for key, and refuses one issued
// for another key: signing with it would only earn 401s.
func bindToken(raw string, key *rsa.PrivateKey, issuer string) (*Token, error) {
	tok, err := ParseToken(raw)
	if err != nil {
		return nil, fmt.Errorf("%s returned an unreadable token: %w", issuer, err)
	}
	if !tok.MatchesKey(&key.PublicKey) {
		return nil, fmt.Errorf("%s returned a token for another key", issuer)
	}
	key.Precompute()
	return tok, nil
}

// Close stops the renewal loop.
func (r *renewer) Close() {
	r.start.Do(func() { close(r.done) })
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}
