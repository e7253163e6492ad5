package credentials_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// scripted is a Fetcher whose answers a test writes, counting calls and
// able to hold a call until released.
type scripted struct {
	calls   atomic.Int64
	answer  func(call int64, background bool) (*credentials.Fetched, error)
	mu      sync.Mutex
	hold    chan struct{} // when set, the next call waits for it (or its context)
	entered chan struct{}
}

func (s *scripted) Fetch(ctx context.Context, background bool) (*credentials.Fetched, error) {
	n := s.calls.Add(1)
	s.mu.Lock()
	hold, entered := s.hold, s.entered
	s.hold, s.entered = nil, nil
	s.mu.Unlock()
	if entered != nil {
		close(entered)
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.answer(n, background)
}

// holdNext makes the next call wait until release is closed; entered is
// closed when it starts.
func (s *scripted) holdNext() (entered, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.entered = make(chan struct{}), make(chan struct{})
	return s.entered, s.hold
}

var errUnreachable = &signer.Error{Kind: signer.ErrAuthService, Detail: "the auth service did not answer", Hint: "check the network path to auth.<region>.oraclecloud.com"}

// The cache alone: what it serves, when it fetches, and how it fails.
func TestCache(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	// creds expire an hour after their fetch and ask to be refreshed ten
	// minutes before.
	creds := func(clock *credentialstest.Clock, n int64) *credentials.Fetched {
		now := clock.Now()
		tok, err := signer.ParseToken(is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: now, Subject: "fetch-" + string(rune('0'+n))}))
		if err != nil {
			t.Fatal(err)
		}
		return &credentials.Fetched{Credentials: &signer.Credentials{KeyID: "ST$" + tok.Raw, Key: key, Token: tok}, RefreshAt: tok.Expiry.Add(-10 * time.Minute)}
	}
	type harness struct {
		clock *credentialstest.Clock
		f     *scripted
		rec   *credentialstest.Refreshes
		src   *credentials.Source
	}
	get := func(t *testing.T, h *harness) *signer.Credentials {
		t.Helper()
		c, err := h.src.Credentials(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		answer func(h *harness) func(int64, bool) (*credentials.Fetched, error)
		run    func(t *testing.T, h *harness)
	}{
		{
			name: "valid credentials are served without a fetch",
			run: func(t *testing.T, h *harness) {
				h.rec.Wait(t, "src", 1) // fetched ahead of the first use
				first := get(t, h)
				for range 100 {
					if c := get(t, h); c != first {
						t.Fatal("a different value while the first is valid")
					}
				}
				h.clock.Advance(49 * time.Minute) // still before the refresh
				if c := get(t, h); c != first || h.f.calls.Load() != 1 {
					t.Fatalf("%d fetches for valid credentials, want 1", h.f.calls.Load())
				}
			},
		},
		{
			name: "near expiry one background refresh runs while callers keep the old value",
			run: func(t *testing.T, h *harness) {
				h.rec.Wait(t, "src", 1)
				old := get(t, h)
				entered, release := h.f.holdNext()
				h.clock.Advance(50 * time.Minute) // the refresh is due
				<-entered
				var wg sync.WaitGroup
				for range 100 {
					wg.Go(func() {
						if c := get(t, h); c != old {
							t.Error("a caller got something else than the current value during the refresh")
						}
					})
				}
				wg.Wait() // none of them waited for the held refresh
				close(release)
				if ev := h.rec.Wait(t, "src", 2); ev.Err != nil {
					t.Fatal(ev.Err)
				}
				if c := get(t, h); c == old || h.f.calls.Load() != 2 {
					t.Fatalf("after the refresh: same value %v, %d fetches, want 2", c == old, h.f.calls.Load())
				}
			},
		},
		{
			name: "a failed refresh keeps the old value until it expires, then gives the actionable error",
			answer: func(h *harness) func(int64, bool) (*credentials.Fetched, error) {
				return func(n int64, _ bool) (*credentials.Fetched, error) {
					if n == 1 {
						return creds(h.clock, n), nil
					}
					return nil, errUnreachable
				}
			},
			run: func(t *testing.T, h *harness) {
				h.rec.Wait(t, "src", 1)
				old := get(t, h)
				h.clock.Advance(50 * time.Minute)
				var waits []time.Duration
				for n := 2; h.clock.Now().Before(old.Expiry()); n++ {
					ev := h.rec.Wait(t, "src", n)
					if !errors.Is(ev.Err, signer.ErrAuthService) || ev.Failures != n-1 {
						t.Fatalf("refresh %d: %+v", n, ev)
					}
					if c := get(t, h); c != old {
						t.Fatal("the last good value was dropped while still valid")
					}
					waits = append(waits, ev.RetryIn)
					h.clock.Advance(ev.RetryIn)
				}
				// Bounded backoff: 1s doubling, never over a minute.
				want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute}
				for i, w := range waits {
					if i < len(want) && w != want[i] || w > time.Minute {
						t.Fatalf("retry waits %v", waits)
					}
				}
				_, err := h.src.Credentials(context.Background())
				var se *signer.Error
				if !errors.As(err, &se) || !errors.Is(err, signer.ErrAuthService) || se.Hint == "" {
					t.Fatalf("once expired: %v, want the fetcher's error with its hint", err)
				}
			},
		},
		{
			name: "a hundred callers during a fetch cause one fetch",
			run: func(t *testing.T, h *harness) {
				// Held before the first fetch ends: nobody has credentials yet.
				var wg sync.WaitGroup
				var got atomic.Int64
				for range 100 {
					wg.Go(func() {
						if _, err := h.src.Credentials(context.Background()); err == nil {
							got.Add(1)
						}
					})
				}
				wg.Wait()
				if got.Load() != 100 || h.f.calls.Load() != 1 {
					t.Fatalf("%d callers served by %d fetches, want 100 by 1", got.Load(), h.f.calls.Load())
				}
				// And again once they expired.
				h.clock.Advance(2 * time.Hour)
				for range 100 {
					wg.Go(func() { get(t, h) })
				}
				wg.Wait()
				if n := h.f.calls.Load(); n > 3 { // at most the loop's refresh and one caller's fetch
					t.Fatalf("%d fetches for 100 callers of expired credentials", n)
				}
			},
		},
		{
			name: "expired credentials are fetched again at once",
			run: func(t *testing.T, h *harness) {
				h.rec.Wait(t, "src", 1)
				old := get(t, h)
				h.clock.Set(old.Expiry())
				if c := get(t, h); c == old || !h.clock.Now().Before(c.Expiry()) {
					t.Fatal("expired credentials served")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{clock: credentialstest.NewClock(t0), f: &scripted{}, rec: credentialstest.NewRefreshes()}
			h.f.answer = func(n int64, _ bool) (*credentials.Fetched, error) { return creds(h.clock, n), nil }
			if tc.answer != nil {
				h.f.answer = tc.answer(h)
			}
			var entered, release chan struct{}
			if tc.name == "a hundred callers during a fetch cause one fetch" {
				entered, release = h.f.holdNext()
			}
			loop := credentials.NewLoop(h.clock, nil)
			t.Cleanup(func() { loop.Close() })
			h.src = credentials.NewSource("src", h.f, loop, credentials.WithClock(h.clock), credentials.WithObserver(h.rec.Observe))
			if entered != nil {
				<-entered
				go func() { time.Sleep(10 * time.Millisecond); close(release) }()
			}
			tc.run(t, h)
		})
	}
}

// Close ends the loop: a refresh under way is cancelled and waited for, and
// no goroutine is left.
func TestLoopCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	clock := credentialstest.NewClock(time.Now())
	f := &scripted{answer: func(int64, bool) (*credentials.Fetched, error) { return nil, errUnreachable }}
	entered, _ := f.holdNext() // never released: only Close's cancellation ends it
	loop := credentials.NewLoop(clock, nil)
	src := credentials.NewSource("src", f, loop, credentials.WithClock(clock))
	<-entered
	if err := loop.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // nothing is left to wake
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches after Close", n)
	}
	// Goroutines that ended may take a moment to be unaccounted (a
	// refresh goroutine runs its last deferred call after Close's wait
	// returns); a leaked one never is.
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 5000 {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// On the real clock too, a source is fetched ahead of its first use: a
// loop comparing "due now" against a now read a moment before must not
// take it for the future (it once spun on that, never fetching).
func TestLoopFetchesAheadOnTheSystemClock(t *testing.T) {
	rec := credentialstest.NewRefreshes()
	f := &scripted{answer: func(int64, bool) (*credentials.Fetched, error) { return nil, errUnreachable }}
	loop := credentials.NewLoop(credentials.SystemClock, nil)
	defer loop.Close()
	src := credentials.NewSource("src", f, loop, credentials.WithObserver(rec.Observe))
	defer src.Close()
	if ev := rec.Wait(t, "src", 1); !ev.Initial || f.calls.Load() != 1 {
		t.Fatalf("first event %+v after %d fetches", ev, f.calls.Load())
	}
}
