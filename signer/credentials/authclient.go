package credentials

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

// authURL is the base URL of the auth service for a region.
func (o *options) authURL(region string) string {
	if o.authBase != "" {
		return strings.TrimSuffix(o.authBase, "/")
	}
	return "https://" + signer.ResolveRegion(region).Endpoint("auth")
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
func refreshSession(ctx context.Context, o *options, c *signer.Credentials) (*signer.Token, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := postSigned(ctx, o, o.authURL(c.Region)+"/v1/authentication/refresh",
		map[string]string{"currentToken": c.Token.Raw}, c, true, &out)
	if err != nil {
		return nil, err
	}
	tok, err := signer.ParseToken(out.Token)
	if err != nil {
		return nil, err
	}
	if !tok.MatchesKey(&c.Key.PublicKey) {
		return nil, &signer.Error{Kind: signer.ErrKeyMismatch, Detail: "the auth service returned a token for another key"}
	}
	return tok, nil
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
