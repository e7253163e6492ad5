// Package credentialstest has test doubles for package credentials: a clock
// moved by hand and a recorder of background refreshes to wait on, so that
// no test sleeps on a real timer to wait for a refresh.
package credentialstest

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/credentials"
)

// Clock is a credentials.Clock that moves only when told to.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

var _ credentials.Clock = (*Clock)(nil)

// NewClock returns a clock showing start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now implements credentials.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Until implements credentials.Clock: the channel receives once the clock
// is moved to or past t.
func (c *Clock) Until(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: t, ch: ch})
	return ch
}

// Advance moves the clock forward by d, firing every After that falls due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (forward or back), firing every After due by t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	var due []waiter
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, w := range due {
		w.ch <- t
	}
}

// Refreshes records the background fetches of credential sources, for
// tests to wait on: pass Observe to credentials.WithObserver.
type Refreshes struct {
	mu     sync.Mutex
	events []credentials.RefreshEvent
	signal chan struct{}
}

// NewRefreshes returns an empty recorder.
func NewRefreshes() *Refreshes { return &Refreshes{signal: make(chan struct{})} }

// Observe records ev.
func (r *Refreshes) Observe(ev credentials.RefreshEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	close(r.signal)
	r.signal = make(chan struct{})
	r.mu.Unlock()
}

// All returns every event so far.
func (r *Refreshes) All() []credentials.RefreshEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]credentials.RefreshEvent(nil), r.events...)
}

// Count is how many events source has had.
func (r *Refreshes) Count(source string) int {
	n := 0
	for _, ev := range r.All() {
		if ev.Source == source {
			n++
		}
	}
	return n
}

// Wait waits until source has had n events and returns the nth. The
// deadline only guards against a hang: the wait ends on the event itself.
func (r *Refreshes) Wait(t testing.TB, source string, n int) credentials.RefreshEvent {
	t.Helper()
	return r.wait(t, source, n, func(credentials.RefreshEvent) bool { return true })
}

// WaitRefresh is Wait counting only refreshes, not the fetch ahead of the
// first use: whether that one is made by the loop or by a first caller is
// a race a test should not depend on.
func (r *Refreshes) WaitRefresh(t testing.TB, source string, n int) credentials.RefreshEvent {
	t.Helper()
	return r.wait(t, source, n, func(ev credentials.RefreshEvent) bool { return !ev.Initial })
}

func (r *Refreshes) wait(t testing.TB, source string, n int, counts func(credentials.RefreshEvent) bool) credentials.RefreshEvent {
	t.Helper()
	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	for {
		r.mu.Lock()
		seen := 0
		for _, ev := range r.events {
			if ev.Source == source && counts(ev) {
				seen++
				if seen == n {
					r.mu.Unlock()
					return ev
				}
			}
		}
		signal := r.signal
		r.mu.Unlock()
		select {
		case <-signal:
		case <-guard.C:
			t.Fatalf("no refresh #%d of %s within 30s; saw %d", n, source, seen)
		}
	}
}
