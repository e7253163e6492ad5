package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
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

// authURL is the base URL of the auth service for a region.
func (o *options) authURL(region string) string {
	if o.authBaseURL != "" {
		return strings.TrimSuffix(o.authBaseURL, "/")
	}
	return "https://" + ResolveRegion(region).Endpoint("auth")
}

// postSigned POSTs a JSON body signed with c and decodes a JSON answer into out.
func postSigned(ctx context.Context, o *options, rawURL string, body any, c *Credentials, withHost bool, out any) error {
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
	s, err := sign(&Request{Method: http.MethodPost, Host: u.Host, Target: u.RequestURI(), Header: HTTPHeader(req.Header), Body: payload}, c, o.clock(), withHost)
	if err != nil {
		return err
	}
	for _, f := range s.Headers {
		req.Header.Set(f.Name, f.Value)
	}
	return do(o.client, req, out)
}

// do sends req and decodes a 200's JSON body into out; other answers become *authError.
func do(client *http.Client, req *http.Request, out any) error {
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
			e.code, e.message = oe.Code, oe.Message
		} else {
			e.message = strings.TrimSpace(string(data))
			if len(e.message) > 200 {
				e.message = e.message[:200] + "…"
			}
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
func refreshSession(ctx context.Context, o *options, c *Credentials) (*Token, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := postSigned(ctx, o, o.authURL(c.Region)+"/v1/authentication/refresh",
		map[string]string{"currentToken": c.Token.Raw}, c, true, &out)
	if err != nil {
		return nil, err
	}
	tok, err := ParseToken(out.Token)
	if err != nil {
		return nil, err
	}
	if !tok.MatchesKey(&c.Key.PublicKey) {
		return nil, &Error{Kind: ErrKeyMismatch, Detail: "the auth service returned a token for another key"}
	}
	return tok, nil
}

// backoff is the wait before retry n (0-based): 1s doubling to a minute.
func backoff(n int) time.Duration {
	d := time.Second << min(n, 6)
	return min(d, time.Minute)
}

// schedule is when a background loop next renews a token: margin before
// it expires, or after a failure when the backoff says to try again.
type schedule struct {
	failures int
	retryAt  time.Time
}

func (s *schedule) next(t *Token, margin time.Duration) time.Time {
	if s.failures > 0 {
		return s.retryAt
	}
	return renewAt(t, margin)
}

// failed records a failure at now and returns how long until the retry.
func (s *schedule) failed(now time.Time) time.Duration {
	d := backoff(s.failures)
	s.failures++
	s.retryAt = now.Add(d)
	return d
}

func (s *schedule) succeeded() { s.failures = 0 }

// renewAt is when a token should be renewed: margin before it expires, or a
// fifth of its lifetime, whichever is earlier.
func renewAt(t *Token, margin time.Duration) time.Time {
	life := t.Expiry.Sub(t.IssuedAt)
	if t.IssuedAt.IsZero() || life <= 0 {
		life = 0
	}
	return t.Expiry.Add(-max(margin, life/5))
}
