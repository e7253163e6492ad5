package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness is the /readyz answer.
type readiness struct {
	Ready     bool         `json:"ready"`
	Profile   string       `json:"profile"`
	Principal string       `json:"principal,omitempty"`
	Expires   *time.Time   `json:"expires,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	Probe     *probeResult `json:"probe,omitempty"`
	// OCIRefusals are OCI's 401 and 403 to what was signed, by profile and
	// status (refusals.go); they do not make the service unready.
	OCIRefusals []refusalDetail `json:"oci_refusals,omitempty"`
}

func (s *service) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// Alive as long as the process answers: restarting would not fix a
	// profile that cannot sign, so liveness does not depend on it.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := s.readiness(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rd)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /ca.pem", s.caHandler())
	return mux
}

// readiness: the default profile can sign now (its token not expired), and
// when periodic probing is on, the last probe got a 200.
func (s *service) readiness(ctx context.Context) readiness {
	rd := readiness{Profile: s.profile, OCIRefusals: s.refused.details()}
	s.mu.Lock()
	draining, last := s.draining, s.lastProb
	s.mu.Unlock()
	if draining {
		rd.Reason = "draining: shutting down"
		return rd
	}
	c, err := s.creds.Source(s.profile).Credentials(ctx)
	if err != nil {
		rd.Reason = err.Error()
		return rd
	}
	rd.Principal = string(c.Kind)
	if exp := c.Expiry(); !exp.IsZero() {
		e := exp.UTC()
		rd.Expires = &e
	}
	if s.opts.probeInterval > 0 {
		switch {
		case last == nil:
			rd.Reason = "waiting for the first namespace probe"
			return rd
		case !last.OK:
			rd.Probe = last
			rd.Reason = "last namespace probe failed: " + last.Error
			return rd
		}
		rd.Probe = last
	}
	rd.Ready = true
	return rd
}
