package signer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// sessionRefresher keeps a session profile alive: before its token expires
// it gets a new one from the auth service, as `oci session refresh` does,
// until the session ends. The refreshed token lives in memory (and, with
// write-back, replaces the token file). A newer token on disk always wins:
// `oci session authenticate` or a refresh by the CLI take effect at once.
type sessionRefresher struct {
	profile string
	disk    *fileSource
	opts    options

	mem     atomic.Pointer[Credentials] // the last token this refresher obtained
	refused atomic.Pointer[Token]       // a token the auth service refused to refresh (401)

	start sync.Once
	stop  chan struct{}
	done  chan struct{}
}

func newSessionRefresher(profile string, disk *fileSource, o options) *sessionRefresher {
	return &sessionRefresher{profile: profile, disk: disk, opts: o, stop: make(chan struct{}), done: make(chan struct{})}
}

// Credentials implements Source: the newer of the disk's and the refreshed
// token, never blocking on the auth service.
func (r *sessionRefresher) Credentials(ctx context.Context) (*Credentials, error) {
	r.start.Do(func() { go r.loop() })
	c, err := r.current(ctx)
	if c != nil {
		return c, nil
	}
	if refused := r.refused.Load(); refused != nil && errors.Is(err, ErrTokenExpired) {
		return nil, &Error{Kind: ErrTokenExpired, Profile: r.profile, Token: refused,
			Detail: fmt.Sprintf("session token expired at %s and the auth service refused to refresh it", refused.Expiry.UTC().Format("2006-01-02 15:04:05 UTC")),
			Hint:   fmt.Sprintf("the session can no longer be refreshed; run `oci session authenticate --profile-name %s`", r.profile)}
	}
	return nil, err
}

// current picks the usable credentials: the disk's, or the refreshed ones
// when they are newer and still valid.
func (r *sessionRefresher) current(ctx context.Context) (*Credentials, error) {
	d, err := r.disk.Credentials(ctx)
	m := r.mem.Load()
	now := r.opts.clock()
	if m != nil && (m.Token.Expired(now) || d != nil && !d.Token.IssuedAt.Before(m.Token.IssuedAt)) {
		m = nil // expired, or the disk caught up or moved on
	}
	if m != nil && d != nil && !m.Key.Equal(d.Key) {
		m = nil // `oci session authenticate` made a new key: the disk's session wins
	}
	if m != nil {
		return m, nil
	}
	return d, err
}

// Close stops the refresh loop.
func (r *sessionRefresher) Close() {
	r.start.Do(func() { close(r.done) }) // never started: nothing to stop
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// poll bounds how long the loop sleeps, so a token appearing on disk is
// looked at even with no traffic.
const poll = 30 * time.Second

func (r *sessionRefresher) loop() {
	defer close(r.done)
	var sched schedule
	for {
		wait := poll
		c, _ := r.current(context.Background())
		now := r.opts.clock()
		if c != nil && r.refreshable(c, now) {
			at := sched.next(c.Token, r.opts.refreshMargin)
			if !at.After(now) {
				switch err := r.refresh(c); {
				case err == nil:
					sched.succeeded()
					continue
				case isRefused(err):
					sched.succeeded() // nothing to retry: the refusal is final
					r.refused.Store(c.Token)
					r.opts.log.Error("auth service refused to refresh the session; it ends when the current token expires",
						"profile", r.profile, "expires", c.Token.Expiry.UTC(), "error", err.Error(),
						"fix", "oci session authenticate --profile-name "+r.profile)
				default:
					retryIn := sched.failed(r.opts.clock())
					r.opts.log.Warn("session refresh failed; will retry", "profile", r.profile, "attempt", sched.failures,
						"retry_in", retryIn, "expires", c.Token.Expiry.UTC(), "error", err.Error())
				}
				continue
			}
			wait = min(wait, at.Sub(now))
		}
		if !sleep(wait, r.stop, nil) {
			return
		}
	}
}

// refreshable: still valid, the session not over, and not already refused.
func (r *sessionRefresher) refreshable(c *Credentials, now time.Time) bool {
	if c.Token.Expired(now) || !c.Token.SessionEnd.IsZero() && !now.Before(c.Token.SessionEnd) {
		return false
	}
	if refused := r.refused.Load(); refused != nil && refused.Raw == c.Token.Raw {
		return false
	}
	return c.Region != "" || r.opts.authBaseURL != ""
}

func isRefused(err error) bool {
	var ae *authError
	return errors.As(err, &ae) && ae.refused()
}

func (r *sessionRefresher) refresh(c *Credentials) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := refreshSession(ctx, &r.opts, c)
	if err != nil {
		return err
	}
	next := *c
	next.KeyID, next.Token, next.Refreshed = "ST$"+tok.Raw, tok, r.opts.clock()
	r.mem.Store(&next)
	r.opts.log.Info("session token refreshed", "profile", r.profile, "expires", tok.Expiry.UTC(), "session_end", tok.SessionEnd.UTC())
	if r.opts.writeBack {
		if path := r.disk.tokenPath(); path != "" {
			if err := writeFileAtomic(path, []byte(tok.Raw)); err != nil {
				r.opts.log.Warn("cannot write the refreshed token back; it is used from memory", "profile", r.profile, "path", path, "error", err.Error())
			}
		}
	}
	return nil
}

// writeFileAtomic replaces path with data: a reader sees the old file or the
// new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
