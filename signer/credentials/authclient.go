package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// authError is a failed call to an OCI service that issues tokens.
type authError struct {
	status  int // 0 when no answer arrived
	code    string
	message string
	err     error
}

func (e *authError) Error() string {
	switch {
	case e.status == 0:
		return e.err.Error()
	case e.code != "":
		return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message)
	}
	return fmt.Sprintf("%d: %s", e.status, e.message)
}

func (e *authError) Unwrap() error { return e.err }

// refused reports an answer that retrying will not change.
func (e *authError) refused() bool {
	return e.status == http.StatusUnauthorized || e.status == http.StatusForbidden
}

// authURL is the base URL of the auth service for a region: the
// operator's --auth-url, or https://auth.<region>.<realm domain> for a
// region that passes signer.ParseRegion (credentials carry only such
// regions; it is checked again because a session token goes there).
func (o *options) authURL(region string) (string, error) {
	if o.authBase != "" {
		return strings.TrimSuffix(o.authBase, "/"), nil
	}
	r, err := signer.ParseRegion(region)
	if err != nil {
		return "", err
	}
	return "https://" + r.Endpoint("auth"), nil
}

// postSigned POSTs a JSON body signed with c and decodes a JSON answer into out.
func postSigned(ctx context.Context, o *options, rawURL string, body any, c *signer.Credentials, withHost bool, out any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	s, err := signer.Sign(&signer.Request{Method: http.MethodPost, Host: u.Host, Target: u.RequestURI(), Header: signer.HTTPHeader(req.Header), Body: payload, NoHost: !withHost}, c, o.clock.Now())
	if err != nil {
		return err
	}
	for _, f := range s.Headers {
		req.Header.Set(f.Name, f.Value)
	}
	var secrets []string
	if c.Token != nil {
		secrets = append(secrets, c.Token.Raw) // a refresh sends it, in the keyId and the body
	}
	return do(o.client, req, out, secrets...)
}

// do sends req and decodes a 200's JSON body into out; other answers become
// *authError, whose text never repeats the secrets given (what was sent).
func do(client *http.Client, req *http.Request, out any, secrets ...string) error {
	resp, err := client.Do(req)
	if err != nil {
		return &authError{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &authError{err: err}
	}
	if resp.StatusCode != http.StatusOK {
		e := &authError{status: resp.StatusCode, err: errors.New(resp.Status)}
		var oe struct{ Code, Message string }
		if json.Unmarshal(data, &oe) == nil && oe.Code != "" {
			e.code, e.message = remoteText(oe.Code, secrets...), remoteText(oe.Message, secrets...)
		} else {
			e.message = remoteText(string(data), secrets...)
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &authError{status: resp.StatusCode, message: "unreadable answer", err: err}
	}
	return nil
}

// refreshSession exchanges a session token for a new one, as `oci session
// refresh` does: a POST of {"currentToken": ...} signed with the session.
func refreshSession(ctx context.Context, o *options, c *signer.Credentials) (*signer.Token, error) {
	var out struct {
		Token string `json:"token"`
	}
	base, err := o.authURL(c.Region)
	if err != nil {
		return nil, err
	}
	err = postSigned(ctx, o, base+"/v1/authentication/refresh",
		map[string]string{"currentToken": c.Token.Raw}, c, true, &out)
	if err != nil {
		return nil, err
	}
	tok, err := signer.ParseToken(out.Token)
	if err != nil {
		return nil, err
	}
	if err := checkSuccessor(c.Token, tok, c, o.clock.Now()); err != nil {
		return nil, &signer.Error{Kind: signer.ErrAuthService, Detail: "the auth service answered the refresh with a token that is not the current session's successor; it is not used", Err: err}
	}
	return tok, nil
}

// checkSuccessor decides whether a token the auth service answered a
// refresh with may replace cur. ocisigner cannot verify the JWT's
// signature (OCI does, with keys ocisigner does not have), so what it can
// check it does: a refresh continues the same session, and the auth
// service keeps every claim but the times and the token id. So the
// successor must be bound to the same session key (jwk), name the same
// issuer, subject, tenant, principal type and session end, be issued no
// earlier than cur and not expire past the session's end or before now.
// Anything else (a token another server minted for the jwk it was shown,
// say) would be installed, sent as keyId to OCI and, with --write-back,
// written to the token file: refused.
func checkSuccessor(cur, next *signer.Token, c *signer.Credentials, now time.Time) error {
	switch {
	case next.PublicKey() == nil || !next.MatchesKey(&c.Key.PublicKey):
		return errors.New("it is not bound to the session key (jwk)")
	case next.Issuer != cur.Issuer:
		return fmt.Errorf("its issuer %q is not the current token's %q", text.Cut(next.Issuer, 64), text.Cut(cur.Issuer, 64))
	case next.Subject != cur.Subject || next.Tenant != cur.Tenant || next.PrincipalType != cur.PrincipalType:
		return errors.New("its subject, tenant or principal type differs from the current token's")
	case !next.SessionEnd.Equal(cur.SessionEnd):
		return errors.New("its session end (sess_exp) differs from the current token's: a refresh does not start a new session")
	case next.IssuedAt.Before(cur.IssuedAt):
		return errors.New("it was issued before the current token")
	case !now.Before(next.Expiry):
		return fmt.Errorf("it expired at %s", next.Expiry.UTC().Format(time.RFC3339))
	case !cur.SessionEnd.IsZero() && next.Expiry.After(cur.SessionEnd):
		return errors.New("it outlives the session's end")
	}
	return nil
}

// renewAt is when a token should be renewed: margin before it expires, or a
// fifth of its lifetime, whichever is earlier.
func renewAt(t *signer.Token, margin time.Duration) time.Time {
	life := t.Expiry.Sub(t.IssuedAt)
	if t.IssuedAt.IsZero() || life <= 0 {
		life = 0
	}
	return t.Expiry.Add(-max(margin, life/5))
}

func isRefused(err error) bool {
	var ae *authError
	return errors.As(err, &ae) && ae.refused()
}
