package signer

import (
	"context"
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

	cur     atomic.Pointer[Credentials]
	lastErr atomic.Pointer[error]
	mu      sync.Mutex // one fetch at a time

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
		r.lastErr.Store(&err)
		return nil, err
	}
	c.Refreshed = r.opts.clock()
	r.cur.Store(c)
	r.lastErr.Store(nil)
	select {
	case r.kick <- struct{}{}:
	default:
	}
	r.opts.log.Info("token obtained", "principal", string(c.Kind), "name", r.name, "expires", c.Token.Expiry.UTC(), "key_id", MaskKeyID(c.KeyID))
	return c, nil
}

func (r *renewer) loop() {
	defer close(r.done)
	failures := 0
	var retryAt time.Time // after a failure: when to try again
	for {
		wait := poll
		now := r.opts.clock()
		if c := r.cur.Load(); c != nil {
			at := renewAt(c.Token, r.opts.refreshMargin)
			if failures > 0 {
				at = retryAt
			}
			if !at.After(now) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := r.renew(ctx, true)
				cancel()
				if err != nil {
					failures++
					retryAt = r.opts.clock().Add(backoff(failures - 1))
					r.opts.log.Warn("token renewal failed; the current token stays in use until it expires",
						"name", r.name, "attempt", failures, "retry_in", backoff(failures-1), "expires", c.Token.Expiry.UTC(), "error", err.Error())
				} else {
					failures = 0
				}
				continue
			}
			wait = min(wait, at.Sub(now))
		}
		t := time.NewTimer(wait)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-r.kick:
			t.Stop()
		case <-t.C:
		}
	}
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
