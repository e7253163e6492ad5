package credentials

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// entry is what one fetch produced: a value and when to look again.
type entry[T any] struct {
	value T
	// expires is when value stops working (a token's exp); zero: never.
	// The cache does not hand the value out at or after it.
	expires time.Time
	// refreshAt is when the loop fetches again in the background, ahead
	// of expiry; zero: never.
	refreshAt time.Time
	// changed reports, cheaply (a stat), that what the value was read from
	// changed since the fetcher last looked; the cache then fetches before
	// answering. nil: nothing to watch.
	changed func() bool
}

// fetcher gets a value from where it lives: files, a metadata service, the
// auth service. The cache calls it one call at a time. background is true
// when the loop calls ahead of expiry; a fetcher that can answer from what
// it has (files) does not go to the network when it is false. A fetcher
// may return an entry with its error: a usable value it could not renew
// (a session token read from disk whose refresh failed); the cache then
// uses that value and counts the failure.
type fetcher[T any] interface {
	fetch(ctx context.Context, background bool) (*entry[T], error)
}

// fetchTimeout bounds one background fetch.
const fetchTimeout = 30 * time.Second

// cache is the one cache every credential source goes through (and the
// config file too). While its value is usable it answers without blocking
// and without I/O beyond the fetcher's change check; ahead of expiry the
// loop refreshes it in the background while callers keep the current
// value; a failed refresh keeps the last good value until it expires,
// retrying with bounded backoff; one fetch runs at a time, so a hundred
// callers arriving during a fetch cause one fetch, not a hundred.
type cache[T any] struct {
	name    string
	f       fetcher[T]
	clock   Clock
	log     *slog.Logger
	observe func(RefreshEvent)
	// remote: the value comes from a service (a principal), so a failed
	// background fetch is retried even if nothing good was ever fetched.
	// A file-backed source that never worked waits for a request instead.
	remote bool
	onNew  func() // a new value or schedule: the loop replans

	st   atomic.Pointer[cacheState[T]]
	mu   sync.Mutex  // one fetch at a time
	busy atomic.Bool // a background refresh is under way

	// early: a refresh ahead of schedule was granted (refreshEarly) and
	// the loop has not run it yet. earlyAt is when the last one was
	// granted, for the rate limit.
	early   atomic.Bool
	earlyMu sync.Mutex
	earlyAt time.Time
}

type cacheState[T any] struct {
	e        *entry[T] // the last good value; nil before the first
	err      error     // why the last fetch failed; nil after a success
	failures int       // background fetches failed in a row
	retryAt  time.Time // when the loop tries again after a failure; zero: not
}

// RefreshEvent reports a background fetch, for metrics, logs and tests.
type RefreshEvent struct {
	Source   string        // profile or principal name
	Err      error         // nil on success
	Failures int           // failed in a row, including this one
	RetryIn  time.Duration // when the next attempt is, after a failure
	Expires  time.Time     // of the value now in use; zero if none or it does not expire
	// Initial marks the fetch ahead of the first use. For a source with
	// files at hand it reads them only: a refresh that is then due is the
	// next event.
	Initial bool
}

func (c *cache[T]) usable(e *entry[T], now time.Time) bool {
	return e != nil && (e.expires.IsZero() || now.Before(e.expires))
}

func (c *cache[T]) fresh(e *entry[T]) bool {
	return c.usable(e, c.clock.Now()) && (e.changed == nil || !e.changed())
}

// get returns the current value, fetching it first only when there is none
// usable or its source changed.
func (c *cache[T]) get(ctx context.Context) (T, error) {
	if st := c.st.Load(); st != nil && c.fresh(st.e) {
		return st.e.value, nil
	}
	return c.fetchNow(ctx)
}

func (c *cache[T]) fetchNow(ctx context.Context) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state()
	if c.fresh(st.e) {
		return st.e.value, nil // fetched while this call waited
	}
	e, err := c.f.fetch(ctx, false)
	if err == nil || e != nil {
		c.st.Store(&cacheState[T]{e: e, err: err})
		c.replan()
		return e.value, nil
	}
	next := *st
	next.err = err
	c.st.Store(&next)
	if c.usable(st.e, c.clock.Now()) {
		// Its source changed into something unusable (a half-written file):
		// keep what worked, which is still valid. Said once per new error.
		if st.err == nil || st.err.Error() != err.Error() {
			c.log.Warn("new credentials are not usable; keeping the last good credentials", "source", c.name, "error", err.Error())
		}
		return st.e.value, nil
	}
	var zero T
	return zero, err
}

func (c *cache[T]) state() *cacheState[T] {
	if st := c.st.Load(); st != nil {
		return st
	}
	return &cacheState[T]{}
}

// due is when the loop should fetch in the background; zero: not at all.
// A cache never fetched is due at once: credentials are fetched ahead of
// the first request.
func (c *cache[T]) due() time.Time {
	st := c.st.Load()
	switch {
	case st == nil, c.early.Load():
		return dueAtOnce
	case st.failures > 0:
		return st.retryAt
	case st.e != nil:
		return st.e.refreshAt
	}
	return time.Time{}
}

// dueAtOnce is a time before any clock's now: due at once, whatever the
// time the loop read a moment earlier.
var dueAtOnce = time.Unix(1, 0)

// begin claims the background refresh; false if one is under way.
func (c *cache[T]) begin() bool { return c.busy.CompareAndSwap(false, true) }

// refresh is the background fetch the loop runs when the cache is due.
func (c *cache[T]) refresh(ctx context.Context) {
	defer c.busy.Store(false)
	c.mu.Lock()
	if at := c.due(); at.IsZero() || at.After(c.clock.Now()) {
		// A caller fetched while the loop was on its way: nothing is due.
		c.mu.Unlock()
		return
	}
	first := c.st.Load() == nil
	st := c.state()
	if c.early.Swap(false) {
		ctx = context.WithValue(ctx, earlyKey{}, true)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	// The first fetch, ahead of any request, is made as a request would
	// make it: from what is at hand when there is something (a session's
	// files), so the credentials are there before a refresh that is due
	// goes to the network on the loop's next turn.
	e, err := c.f.fetch(ctx, !first)
	cancel()
	now := c.clock.Now()
	ev := RefreshEvent{Source: c.name}
	if err == nil {
		c.st.Store(&cacheState[T]{e: e})
		c.mu.Unlock()
		ev.Expires, ev.Initial = e.expires, first
		c.emit(ev)
		return
	}
	if e == nil {
		e = st.e // keep the last good value
	}
	next := &cacheState[T]{e: e, err: err, failures: st.failures + 1}
	if c.remote || e != nil {
		next.retryAt = now.Add(backoff(st.failures))
	}
	c.st.Store(next)
	c.mu.Unlock()
	ev.Err, ev.Failures, ev.Initial = err, next.failures, first
	if !next.retryAt.IsZero() {
		ev.RetryIn = next.retryAt.Sub(now)
	}
	if c.usable(e, now) {
		ev.Expires = e.expires
		c.log.Warn("credential refresh failed; the current credentials stay in use until they expire",
			"source", c.name, "attempt", next.failures, "retry_in", ev.RetryIn, "expires", e.expires.UTC(), "error", err.Error())
	} else if next.failures == 1 || !next.retryAt.IsZero() {
		c.log.Warn("credentials not usable", "source", c.name, "attempt", next.failures, "retry_in", ev.RetryIn, "error", err.Error())
	}
	c.emit(ev)
}

// earlyKey marks the context of a fetch refreshEarly asked for: a fetcher
// that renews only once renewal is due (a session, a token exchange) renews
// now.
type earlyKey struct{}

// early reports whether ctx is an early refresh's.
func early(ctx context.Context) bool { return ctx.Value(earlyKey{}) != nil }

// refreshEarly asks the loop to fetch in the background now, ahead of
// schedule, unless it granted that less than every ago (by the cache's
// clock): however often it is asked, at most one such fetch per interval.
// It reports whether it asked.
func (c *cache[T]) refreshEarly(every time.Duration) bool {
	c.earlyMu.Lock()
	now := c.clock.Now()
	if !c.earlyAt.IsZero() && now.Sub(c.earlyAt) < every {
		c.earlyMu.Unlock()
		return false
	}
	c.earlyAt = now
	c.early.Store(true)
	c.earlyMu.Unlock()
	c.replan()
	return true
}

func (c *cache[T]) emit(ev RefreshEvent) {
	if c.observe != nil {
		c.observe(ev)
	}
}

func (c *cache[T]) replan() {
	if c.onNew != nil {
		c.onNew()
	}
}

// backoff is the wait before retry n (0-based): 1s doubling to a minute.
func backoff(n int) time.Duration {
	d := time.Second << min(n, 6)
	return min(d, time.Minute)
}
