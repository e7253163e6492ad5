package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// tokenReport is what `ocisigner token` shows of one profile.
type tokenReport struct {
	Profile    string     `json:"profile"`
	Principal  string     `json:"principal,omitempty"`
	KeyID      string     `json:"key_id,omitempty"` // masked unless --reveal
	Subject    string     `json:"subject,omitempty"`
	Tenancy    string     `json:"tenancy,omitempty"`
	Region     string     `json:"region,omitempty"`
	Created    *time.Time `json:"created,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	Remaining  string     `json:"remaining,omitempty"`
	SessionEnd *time.Time `json:"session_end,omitempty"`
	Refreshed  *time.Time `json:"last_refresh,omitempty"`
	Expired    bool       `json:"expired"`
	Token      string     `json:"token,omitempty"` // masked unless --reveal
	// SubjectToken is the external identity a federated token was
	// exchanged for (token exchange); never the subject token itself.
	SubjectToken *subjectInfo `json:"subject_token,omitempty"`
	// Warning is about something that may be wrong although the profile
	// works: a region ocisigner does not know.
	Warning string `json:"warning,omitempty"`
	Error   string `json:"error,omitempty"`
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	var (
		cf     credentialFlags
		all    bool
		reveal bool
		asJSON bool
	)
	cf.register(fs)
	fs.BoolVar(&all, "all", false, "report every profile of the config")
	fs.BoolVar(&reveal, "reveal", false, "print the token itself (it is a credential: keep it out of logs and tickets)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, cf.settle(getenv)); !ok {
		return exit
	}
	cfg, err := cf.open(getenv, discardLogger())
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner token:", err)
		return credentialExit(err)
	}
	defer cfg.Close()
	names := []string{cf.profileName(getenv)}
	if all {
		names = cfg.Names()
	}
	now := time.Now()
	exit := exitOK
	reports := make([]tokenReport, 0, len(names))
	for _, name := range names {
		r, code := inspect(ctx, cfg.Source(name), name, reveal, now)
		if code != exitOK && exit == exitOK {
			exit = code
		}
		reports = append(reports, r)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
		return exit
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printToken(stdout, r)
	}
	return exit
}

// inspect reports a profile's credentials. An expired token is still
// described: when it was issued and when its session ends is what the
// operator needs to decide between refresh and authenticate.
func inspect(ctx context.Context, src signer.Source, name string, reveal bool, now time.Time) (tokenReport, int) {
	r := tokenReport{Profile: name}
	c, err := src.Credentials(ctx)
	var tok *signer.Token
	code := exitOK
	if err != nil {
		r.Error = err.Error()
		code = credentialExit(err)
		var se *signer.Error
		if errors.As(err, &se) && se.Token != nil {
			tok = se.Token
		}
	} else {
		r.Principal = string(c.Kind)
		r.Region, r.Tenancy = c.Region, c.Tenancy
		if reg, err := signer.ParseRegion(c.Region); err == nil && c.Region != "" {
			r.Warning = regionWarning(reg)
		}
		r.KeyID = signer.MaskKeyID(c.KeyID)
		if reveal {
			r.KeyID = c.KeyID
		}
		tok = c.Token
		r.SubjectToken = newSubjectInfo(c)
		if !c.Refreshed.IsZero() {
			t := c.Refreshed.UTC()
			r.Refreshed = &t
		}
	}
	if tok != nil {
		utc := func(t time.Time) *time.Time {
			if t.IsZero() {
				return nil
			}
			t = t.UTC()
			return &t
		}
		r.Subject = tok.Subject
		if r.Tenancy == "" {
			r.Tenancy = tok.Tenant
		}
		r.Created, r.Expires, r.SessionEnd = utc(tok.IssuedAt), utc(tok.Expiry), utc(tok.SessionEnd)
		r.Expired = tok.Expired(now)
		r.Remaining = tok.Expiry.Sub(now).Truncate(time.Second).String()
		r.Token = signer.MaskSecret(tok.Raw)
		if reveal {
			r.Token = tok.Raw
		}
	}
	return r, code
}

func printToken(w io.Writer, r tokenReport) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-13s %s\n", k+":", v)
		}
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	line("profile", r.Profile)
	line("principal", r.Principal)
	line("subject", r.Subject)
	line("tenancy", r.Tenancy)
	line("region", r.Region)
	line("created", ts(r.Created))
	line("expires", ts(r.Expires))
	if r.Expires != nil {
		if r.Expired {
			line("remaining", "EXPIRED")
		} else {
			line("remaining", r.Remaining)
		}
	}
	line("session ends", ts(r.SessionEnd))
	line("last refresh", ts(r.Refreshed))
	if sj := r.SubjectToken; sj != nil {
		line("subject iss", sj.Issuer)
		line("subject sub", sj.Subject)
		if sj.Expires != nil {
			line("subject exp", sj.Expires.Format(time.RFC3339))
		}
	}
	line("key id", r.KeyID)
	line("token", r.Token)
	line("warning", r.Warning)
	line("error", r.Error)
}
