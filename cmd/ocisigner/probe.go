package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/internal/text"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
)

// probeResult is what a namespace probe found. The JSON form is stable:
// scripts read it.
type probeResult struct {
	Profile   string     `json:"profile"`
	Principal string     `json:"principal,omitempty"`
	Tenancy   string     `json:"tenancy,omitempty"`
	Region    string     `json:"region,omitempty"`
	Endpoint  string     `json:"endpoint"`
	Via       string     `json:"via,omitempty"`
	Status    int        `json:"status,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
	RequestID string     `json:"opc_request_id,omitempty"`
	LatencyMS float64    `json:"latency_ms"`
	OK        bool       `json:"ok"`
	ErrorCode string     `json:"error_code,omitempty"`
	Error     string     `json:"error,omitempty"`
	Token     *tokenInfo `json:"token,omitempty"`
	// Hint says what to do about the error, when it is one with a usual fix.
	Hint string `json:"hint,omitempty"`
	// Warning is about something that may be wrong although the probe ran.
	Warning string `json:"warning,omitempty"`
	// SignedHeaders are the headers the probe signed with, masked (-v).
	SignedHeaders []signer.Field `json:"signed_headers,omitempty"`
	At            time.Time      `json:"at"`
	exit          int
}

// tokenInfo is the timing of a security token, never the token itself.
type tokenInfo struct {
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Remaining string    `json:"remaining"`
	// SessionEnd is when the session can no longer be refreshed (sess_exp).
	SessionEnd *time.Time `json:"session_end,omitempty"`
	// LastRefresh is when ocisigner last refreshed or renewed the token, if it did.
	LastRefresh *time.Time `json:"last_refresh,omitempty"`
	// Subject is the external identity a federated token was exchanged for.
	Subject *subjectInfo `json:"subject_token,omitempty"`
}

// subjectInfo is what a token-exchange principal's subject token says.
type subjectInfo struct {
	Issuer  string     `json:"iss"`
	Subject string     `json:"sub"`
	Expires *time.Time `json:"expires,omitempty"`
}

func newSubjectInfo(c *signer.Credentials) *subjectInfo {
	if c == nil || c.Subject == nil {
		return nil
	}
	si := &subjectInfo{Issuer: c.Subject.Issuer, Subject: c.Subject.Subject}
	if !c.Subject.Expiry.IsZero() {
		e := c.Subject.Expiry.UTC()
		si.Expires = &e
	}
	return si
}

func newTokenInfo(c *signer.Credentials, now time.Time) *tokenInfo {
	if c == nil || c.Token == nil {
		return nil
	}
	ti := &tokenInfo{Created: c.Token.IssuedAt.UTC(), Expires: c.Token.Expiry.UTC(), Remaining: c.Token.Expiry.Sub(now).Truncate(time.Second).String()}
	if !c.Token.SessionEnd.IsZero() {
		se := c.Token.SessionEnd.UTC()
		ti.SessionEnd = &se
	}
	if !c.Refreshed.IsZero() {
		lr := c.Refreshed.UTC()
		ti.LastRefresh = &lr
	}
	ti.Subject = newSubjectInfo(c)
	return ti
}

// probeParams say what to probe and how.
type probeParams struct {
	profile  string
	src      signer.Source // credentials of the profile; unused with via
	region   string        // --region, else the profile's
	endpoint string        // --endpoint: base URL instead of https://objectstorage.<region>.<domain>
	via      string        // --via: send unsigned through this gateway
	verbose  bool          // -v: report the signed headers, masked
	client   *http.Client
	now      func() time.Time
}

// probe runs the namespace probe: a signed GET /n/ to Object Storage. It
// needs no IAM policy, so a 200 proves the credentials.
func probe(ctx context.Context, p probeParams) probeResult {
	res := probeResult{Profile: p.profile, Via: p.via, At: p.now().UTC()}
	var creds *signer.Credentials
	if p.via == "" {
		c, err := p.src.Credentials(ctx)
		if err != nil {
			res.Error, res.exit = err.Error(), credentialExit(err)
			return res
		}
		creds = c
		res.Principal, res.Tenancy = string(c.Kind), c.Tenancy
		res.Token = newTokenInfo(c, p.now())
		if p.region == "" {
			p.region = c.Region
		}
	}
	target, ok := p.target(&res)
	if !ok {
		return res
	}
	req, ok := p.request(ctx, target, creds, &res)
	if !ok {
		return res
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	res.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		res.Error, res.exit = "cannot reach "+req.URL.Host+": "+err.Error(), exitNetwork
		res.Hint = networkHint(err, p.via)
		return res
	}
	defer resp.Body.Close()
	p.read(resp, &res)
	return res
}

// target is the namespace URL: --endpoint's, else the region's Object
// Storage.
func (p probeParams) target(res *probeResult) (*url.URL, bool) {
	base := p.endpoint
	if base == "" && p.region == "" {
		res.Error, res.exit = "no region: the profile has none; pass --region", exitConfig
		return nil, false
	}
	if p.region != "" {
		// Validated where it entered (the flag, the profile); checked again
		// because the probe's URL, with the credentials, is built from it.
		r, err := signer.ParseRegion(p.region)
		if err != nil {
			res.Error, res.exit = err.Error(), exitConfig
			return nil, false
		}
		res.Region, res.Warning = r.ID, regionWarning(r)
		if base == "" {
			base = "https://" + r.Endpoint("objectstorage")
		}
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/n/")
	if err != nil || u.Host == "" {
		res.Error, res.exit = fmt.Sprintf("--endpoint %q is not a URL", p.endpoint), exitUsage
		return nil, false
	}
	res.Endpoint = u.Scheme + "://" + u.Host
	return u, true
}

// request is the probe's request: signed here, or unsigned to the gateway
// (--via), which signs it.
func (p probeParams) request(ctx context.Context, u *url.URL, creds *signer.Credentials, res *probeResult) (*http.Request, bool) {
	var req *http.Request
	if p.via != "" {
		// Through the gateway: it signs. Host names the real endpoint so
		// the gateway routes and signs for it.
		vu, err := url.Parse(strings.TrimSuffix(p.via, "/") + "/n/")
		if err != nil || vu.Host == "" {
			res.Error, res.exit = fmt.Sprintf("--via %q is not a URL", p.via), exitUsage
			return nil, false
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, vu.String(), nil)
		req.Host = u.Host
		if p.profile != "" {
			req.Header.Set(extproc.DefaultProfileHeader, p.profile)
		}
	} else {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		s, err := signer.Sign(&signer.Request{Method: http.MethodGet, Host: u.Host, Target: u.RequestURI()}, creds, p.now())
		if err != nil {
			res.Error, res.exit = err.Error(), exitFailure
			return nil, false
		}
		for _, f := range s.Headers {
			req.Header.Set(f.Name, f.Value)
			if p.verbose {
				if f.Name == signer.HeaderAuthorization {
					f.Value = maskAuthorization(f.Value)
				}
				res.SignedHeaders = append(res.SignedHeaders, f)
			}
		}
	}
	req.Header.Set("User-Agent", "ocisigner-probe/"+version)
	return req, true
}

// read reads OCI's (or the gateway's) answer into res.
func (p probeParams) read(resp *http.Response, res *probeResult) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res.Status = resp.StatusCode
	res.RequestID = resp.Header.Get("opc-request-id")
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &res.Namespace); err != nil {
			res.Error, res.exit = "200 without a namespace in the body: "+text.Cut(string(body), 200), exitFailure
			return
		}
		res.OK, res.exit = true, exitOK
		return
	}
	var oe struct{ Code, Message string }
	_ = json.Unmarshal(body, &oe)
	res.ErrorCode = oe.Code
	res.Error = fmt.Sprintf("%s: %s", resp.Status, firstNonEmpty(oe.Message, text.Cut(strings.TrimSpace(string(body)), 200)))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		res.exit = exitCredentials
		if resp.Header.Get(extproc.HeaderRefused) == "" {
			res.Hint = unauthorizedHint(resp.Header.Get("Date"), p.now(), res.Principal)
		}
	case oe.Code == extproc.CodeUnknownProfile:
		res.exit = exitConfig
	default:
		res.exit = exitFailure
	}
}

// regionWarning says when a region is not in the table: OCI tooling then
// assumes the commercial realm, which is wrong for a typo.
func regionWarning(r signer.Region) string {
	if r.Known {
		return ""
	}
	w := fmt.Sprintf("region %q is not one ocisigner knows; realm oc1 (%s) assumed", r.ID, r.Domain)
	if near := signer.ClosestRegions(r.ID, 3); len(near) > 0 {
		w += "; did you mean " + strings.Join(near, ", ") + "?"
	}
	return w
}

// networkHint says what usually stops a connection, by what failed.
func networkHint(err error, via string) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case via != "" && errors.As(err, &op) && strings.Contains(err.Error(), "connection refused"):
		return "nothing listens at " + via + ": start the gateway with `docker compose up gateway` (or check the port)"
	case errors.As(err, &dns):
		return "the host name does not resolve: check the region (--region) and this machine's DNS; behind a proxy, set HTTPS_PROXY"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &op) && op.Timeout():
		return "no answer in time: a firewall or proxy may block HTTPS to *.oraclecloud.com (set HTTPS_PROXY if you need one); try the whole path with `ocisigner probe --via http://localhost:10000`"
	case via == "":
		return "check the network path to OCI (firewall, HTTPS_PROXY); try the whole path with `ocisigner probe --via http://localhost:10000`"
	}
	return "check that the gateway runs (`docker compose up gateway`) and can reach OCI"
}

// unauthorizedHint lists the usual causes of OCI's 401 to a signed request,
// the clock first when the answer's Date shows it is off.
func unauthorizedHint(date string, now time.Time, principal string) string {
	var causes []string
	if d, err := http.ParseTime(date); err == nil {
		if skew := now.Sub(d); skew > time.Minute || skew < -time.Minute {
			causes = append(causes, fmt.Sprintf("this machine's clock is %s off OCI's: OCI allows 5 minutes; set the time (NTP)", skew.Round(time.Second).Abs()))
		}
	}
	causes = append(causes,
		"the key is not uploaded to the user (or was deleted), or fingerprint names another key: compare `ocisigner token` with the console's API keys",
		"the clock is more than 5 minutes off",
		fmt.Sprintf("the profile is not the kind you think (it signs as %s): a session profile needs security_token_file in its own section", firstNonEmpty(principal, "?")))
	return "OCI refused the signature; usually: " + strings.Join(causes, "; or ")
}

// credentialExit sorts a credential error into the documented exit codes.
func credentialExit(err error) int {
	switch {
	case errors.Is(err, signer.ErrTokenExpired):
		return exitCredentials
	case errors.Is(err, signer.ErrAuthService):
		var ne net.Error
		if errors.As(err, &ne) {
			return exitNetwork
		}
		return exitCredentials
	}
	var se *signer.Error
	if errors.As(err, &se) {
		return exitConfig
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return exitNetwork
	}
	return exitFailure
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var (
		cf              credentialFlags
		endpoint        = urlFlag{plainHTTP: loopback}
		via             urlFlag
		asJSON, verbose bool
		timeout         time.Duration
	)
	cf.register(fs)
	fs.Var(&endpoint, "endpoint", "base URL instead of https://objectstorage.<region>.<realm domain>; http:// only on loopback")
	fs.Var(&via, "via", "send the probe unsigned through a running gateway at this URL (e.g. http://localhost:10000), to test the whole path")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&verbose, "v", false, "also print the signed headers (masked) and OCI's opc-request-id")
	fs.DurationVar(&timeout, "timeout", 15*time.Second, "give up after this long")
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, cf.settle(getenv)); !ok {
		return exit
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := probeParams{profile: cf.profileName(getenv), region: string(cf.region), endpoint: endpoint.value, via: via.value, verbose: verbose,
		client: &http.Client{Timeout: timeout}, now: time.Now}
	if via.value == "" {
		creds, err := cf.open(getenv, discardLogger())
		if err != nil {
			res := probeResult{Profile: p.profile, Error: err.Error(), exit: credentialExit(err), At: time.Now().UTC()}
			return printProbe(stdout, res, asJSON)
		}
		defer creds.Close()
		p.src = creds.Source(p.profile)
	} else if cf.region == "" && endpoint.value == "" {
		// Through a gateway the local credentials are not needed, only the
		// profile's region, when the config is at hand; a region that is
		// not one is said as such, not as a missing one.
		region, err := credentials.ProfileRegion(cf.configPath(getenv), p.profile)
		if errors.Is(err, signer.ErrInvalidRegion) {
			res := probeResult{Profile: p.profile, Error: err.Error(), exit: credentialExit(err), At: time.Now().UTC()}
			return printProbe(stdout, res, asJSON)
		}
		p.region = region
	}
	return printProbe(stdout, probe(ctx, p), asJSON)
}

func printProbe(w io.Writer, r probeResult, asJSON bool) int {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return r.exit
	}
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-15s %s\n", k+":", v)
		}
	}
	verdict := "FAILED"
	if r.OK {
		verdict = "OK"
	}
	line("result", verdict)
	line("profile", r.Profile)
	line("principal", r.Principal)
	line("tenancy", r.Tenancy)
	line("region", r.Region)
	line("endpoint", r.Endpoint)
	line("via", r.Via)
	if r.Status != 0 {
		line("http status", fmt.Sprint(r.Status))
		line("latency", fmt.Sprintf("%.1f ms", r.LatencyMS))
	}
	line("namespace", r.Namespace)
	line("opc-request-id", r.RequestID)
	if t := r.Token; t != nil {
		line("token created", t.Created.Format(time.RFC3339))
		line("token expires", t.Expires.Format(time.RFC3339))
		line("remaining", t.Remaining)
		if t.SessionEnd != nil {
			line("session ends", t.SessionEnd.Format(time.RFC3339))
		}
		if t.LastRefresh != nil {
			line("last refresh", t.LastRefresh.Format(time.RFC3339))
		}
		if sj := t.Subject; sj != nil {
			line("subject iss", sj.Issuer)
			line("subject sub", sj.Subject)
			if sj.Expires != nil {
				line("subject exp", sj.Expires.Format(time.RFC3339))
			}
		}
	}
	for _, f := range r.SignedHeaders {
		line("signed", f.Name+": "+f.Value)
	}
	line("warning", r.Warning)
	line("error code", r.ErrorCode)
	line("error", r.Error)
	line("hint", r.Hint)
	return r.exit
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
