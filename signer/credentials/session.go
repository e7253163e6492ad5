package credentials

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ocisigner/ocisigner/internal/atomicfile"
	"github.com/ocisigner/ocisigner/signer"
)

// sessionFetcher serves a session profile (`oci session authenticate`): the
// session key and the token file, read again when either changes, and,
// unless refresh is off, a token refreshed at the auth service ahead of
// expiry, as `oci session refresh` does, until the session ends. The
// refreshed token lives in memory (and, with write-back, replaces the token
// file). A newer token on disk always wins: `oci session authenticate` or a
// refresh by the CLI take effect at once.
type sessionFetcher struct {
	p *profile
	o *options
	w watch

	mu        sync.Mutex // the cache calls fetch one at a time; tokenPath reads from elsewhere
	paths     []string   // the files read, as last resolved
	tokenPath string     // the token file; "" when the token is a value
	disk      *signer.Credentials
	diskErr   error
	mem       *signer.Credentials // the last token this process obtained
	refused   *signer.Token       // a token the auth service refused to refresh (401/403)
}

func (f *sessionFetcher) fetch(ctx context.Context, background bool) (*entry[*signer.Credentials], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.disk == nil || f.w.changed() {
		f.readDisk()
	}
	now := f.o.clock.Now()
	cur := f.choose(now)
	if cur == nil {
		return nil, f.diskErr
	}
	if cur.Token.Expired(now) {
		return nil, f.expired(cur.Token, now)
	}
	if background && f.o.refresh && f.refreshable(cur, now) && (early(ctx) || !now.Before(renewAt(cur.Token, f.o.refreshMargin))) {
		next, err := f.refresh(ctx, cur)
		switch {
		case err == nil:
			cur = next
		case isRefused(err):
			f.refused = cur.Token // final: nothing to retry
			f.o.log.Error("auth service refused to refresh the session; it ends when the current token expires",
				"profile", f.p.Name, "expires", cur.Token.Expiry.UTC(), "error", err.Error(),
				"fix", "oci session authenticate --profile-name "+f.p.Name)
		default:
			// The current token is still good: use it, and let the cache
			// retry the refresh.
			return f.entry(cur, now), fmt.Errorf("profile %s: session refresh: %w", f.p.Name, err)
		}
	}
	return f.entry(cur, now), nil
}

func (f *sessionFetcher) entry(cur *signer.Credentials, now time.Time) *entry[*signer.Credentials] {
	e := &entry[*signer.Credentials]{value: cur, expires: cur.Token.Expiry, changed: f.w.changed}
	if f.o.refresh && f.refreshable(cur, now) {
		e.refreshAt = renewAt(cur.Token, f.o.refreshMargin)
	}
	return e
}

// readDisk reads the key and the token file; a failure keeps the last good
// pair from disk and is remembered for the error to give once nothing
// usable is left.
func (f *sessionFetcher) readDisk() {
	p := f.p
	region, err := p.Region()
	if err != nil {
		f.diskErr = err
		return
	}
	keyPath, err := resolveLogged(p, "key_file", "key file", f.o)
	tokenValueGiven := p.Name == f.o.secretsFor && f.o.tokenValue != ""
	var tokenPath string
	if err == nil && !tokenValueGiven {
		tokenPath, err = resolveLogged(p, "security_token_file", "security token file", f.o)
	}
	var pf profileFiles
	if err == nil {
		pf, err = resolveProfileFiles(p, f.o)
	}
	if err != nil {
		f.diskErr = withProfile(err, p.Name)
		return
	}
	f.paths, f.tokenPath = []string{keyPath}, tokenPath
	if tokenPath != "" {
		f.paths = append(f.paths, tokenPath)
	}
	f.paths = pf.paths(f.paths)
	where := tokenPath
	if tokenValueGiven {
		where = EnvSecurityToken
	}
	var c *signer.Credentials
	err = f.w.read(f.paths, func() error {
		key, err := profileKey(p, f.o, keyPath, pf)
		if err != nil {
			return err
		}
		raw := []byte(f.o.tokenValue)
		if !tokenValueGiven {
			if raw, err = readFile(tokenPath, "security token file"); err != nil {
				return err
			}
		}
		tok, err := tokenValue(raw)
		if err == nil {
			c, err = signer.NewSessionCredentials(tok, key)
		}
		if e, ok := err.(*signer.Error); ok {
			e.Path = where
			switch e.Kind {
			case signer.ErrKeyMismatch:
				e.Detail = fmt.Sprintf("security token %s was issued for another key than %s", where, keyPath)
				e.Hint = "a rotation may be half done; run `oci session authenticate --profile-name " + p.Name + "` if this persists"
			case signer.ErrTokenMalformed:
				if e.Hint == "" {
					e.Hint = "the token file must hold the session token `oci session authenticate` writes; run `oci session authenticate --profile-name " + p.Name + "` to write a new one"
				}
			}
		}
		if err != nil {
			return err
		}
		c.OBOToken, err = delegationOf(pf)
		return err
	})
	if err != nil {
		f.diskErr = withProfile(err, p.Name)
		if f.disk != nil {
			f.o.log.Warn("new session files are not usable; keeping the last good credentials", "profile", p.Name, "error", f.diskErr.Error())
		}
		return
	}
	c.Profile, c.Region = p.Name, region
	if t := p.Get("tenancy"); t != "" {
		c.Tenancy = t
	}
	if f.disk != nil {
		f.o.log.Info("credentials reloaded from disk", "profile", p.Name, "kind", string(c.Kind), "key_id", signer.MaskKeyID(c.KeyID))
	}
	f.disk, f.diskErr = c, nil
}

// choose picks the credentials to sign with: the disk's, or the refreshed
// ones when they are newer, still valid and for the same key.
func (f *sessionFetcher) choose(now time.Time) *signer.Credentials {
	d, m := f.disk, f.mem
	if m != nil && (m.Token.Expired(now) || d != nil && !d.Token.IssuedAt.Before(m.Token.IssuedAt)) {
		m = nil // expired, or the disk caught up or moved on
	}
	if m != nil && d != nil && !m.Key.Equal(d.Key) {
		m = nil // `oci session authenticate` made a new key: the disk's session wins
	}
	if m != nil {
		return m
	}
	return d
}

// refreshable: the session not over, not already refused, and an auth
// service to ask.
func (f *sessionFetcher) refreshable(c *signer.Credentials, now time.Time) bool {
	if !c.Token.SessionEnd.IsZero() && !now.Before(c.Token.SessionEnd) {
		return false
	}
	if f.refused != nil && f.refused.Raw == c.Token.Raw {
		return false
	}
	return c.Region != "" || f.o.authBase != ""
}

func (f *sessionFetcher) refresh(ctx context.Context, c *signer.Credentials) (*signer.Credentials, error) {
	tok, err := refreshSession(ctx, f.o, c)
	if err != nil {
		return nil, err
	}
	next := *c
	next.KeyID, next.Token, next.Refreshed = "ST$"+tok.Raw, tok, f.o.clock.Now()
	f.mem = &next
	f.o.log.Info("session token refreshed", "profile", f.p.Name, "expires", tok.Expiry.UTC(), "session_end", tok.SessionEnd.UTC())
	if f.o.writeBack && f.tokenPath != "" {
		if err := atomicfile.Write(f.tokenPath, []byte(tok.Raw), 0o600); err != nil {
			f.o.log.Warn("cannot write the refreshed token back; it is used from memory", "profile", f.p.Name, "path", f.tokenPath, "error", err.Error())
		}
	}
	return &next, nil
}

// expired is the error once the newest token has expired: what to run.
func (f *sessionFetcher) expired(tok *signer.Token, now time.Time) error {
	if f.refused != nil && f.refused.Raw == tok.Raw {
		return &signer.Error{Kind: signer.ErrTokenExpired, Profile: f.p.Name, Token: tok,
			Detail: fmt.Sprintf("session token expired at %s and the auth service refused to refresh it", tok.Expiry.UTC().Format("2006-01-02 15:04:05 UTC")),
			Hint:   fmt.Sprintf("the session can no longer be refreshed; run `oci session authenticate --profile-name %s`", f.p.Name)}
	}
	var paths []string
	if f.tokenPath != "" {
		paths = []string{f.tokenPath}
	}
	return tokenExpired(f.p.Name, signer.KindSession, paths, tok, f.diskErr, now)
}

func tokenExpired(profile string, kind signer.Kind, paths []string, tok *signer.Token, newer error, now time.Time) error {
	e := &signer.Error{Kind: signer.ErrTokenExpired, Profile: profile, Token: tok}
	e.Detail = fmt.Sprintf("session token expired at %s", tok.Expiry.UTC().Format("2006-01-02 15:04:05 UTC"))
	if len(paths) > 0 {
		e.Path = paths[len(paths)-1]
	}
	switch {
	case kind == signer.KindResource:
		e.Detail = fmt.Sprintf("resource principal token expired at %s", tok.Expiry.UTC().Format("2006-01-02 15:04:05 UTC"))
		e.Hint = "whatever provides " + envRPST + " must renew it"
	case !tok.SessionEnd.IsZero() && !now.Before(tok.SessionEnd):
		e.Hint = fmt.Sprintf("the session ended at %s; run `oci session authenticate --profile-name %s`",
			tok.SessionEnd.UTC().Format("2006-01-02 15:04 UTC"), profile)
	default:
		e.Hint = fmt.Sprintf("run `oci session refresh --profile %s` (or `oci session authenticate --profile-name %s` once the session has ended)", profile, profile)
	}
	if newer != nil {
		// The cause, not the hint: it names files, which only the log shows.
		e.Err = fmt.Errorf("the files on disk now are not usable either: %w", newer)
	}
	return e
}
