package main

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocisigner/ocisigner/extproc"
)

// ociRefusals is what the operator sees of OCI's 401 and 403 to requests
// the service signed (extproc's observe stage): a metric by profile and
// status, and the last of each in /readyz. Both keep to closed sets: the
// config's profiles and the two statuses.
type ociRefusals struct {
	counter *prometheus.CounterVec
	label   func(string) string // the profile's metric label (metrics.profileLabel)

	mu   sync.Mutex
	seen map[string]*refusalDetail // by label and status
}

// refusalDetail is one profile and status in /readyz.
type refusalDetail struct {
	Profile   string    `json:"profile"`
	Status    int       `json:"status"`
	Count     int64     `json:"count"`
	Last      time.Time `json:"last"`
	RequestID string    `json:"last_opc_request_id,omitempty"`
	Principal string    `json:"principal,omitempty"`
	KeyID     string    `json:"key_id,omitempty"` // masked
	// EarlyRefresh is when a refusal last asked for an early refresh of
	// the profile's credentials (a 401, for credentials fetched anew).
	EarlyRefresh *time.Time `json:"early_refresh,omitempty"`
	Meaning      string     `json:"meaning"`
}

func newOCIRefusals(m *metrics) *ociRefusals {
	r := &ociRefusals{
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_oci_refusals_total",
			Help: "OCI's 401 and 403 answers to requests ocisigner signed, by profile and status, as Envoy's observing filter reported them.",
		}, []string{"profile", "status"}),
		label: m.profileLabel,
		seen:  map[string]*refusalDetail{},
	}
	m.reg.MustRegister(r.counter)
	return r
}

// ObserveRefusal implements extproc.RefusalObserver.
func (r *ociRefusals) ObserveRefusal(o extproc.OCIRefusal) {
	if o.Status != http.StatusUnauthorized && o.Status != http.StatusForbidden {
		return
	}
	profile, status := r.label(o.Profile), strconv.Itoa(o.Status)
	r.counter.WithLabelValues(profile, status).Inc()
	now := time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.seen[profile+" "+status]
	if !ok {
		d = &refusalDetail{Profile: profile, Status: o.Status}
		r.seen[profile+" "+status] = d
	}
	d.Count++
	d.Last, d.RequestID, d.Principal, d.KeyID = now, o.RequestID, string(o.Kind), o.KeyID
	if o.EarlyRefresh {
		d.EarlyRefresh = &now
	}
	d.Meaning = "OCI did not accept the credentials (revoked, expired or rotated token, unregistered key, clock skew)"
	if o.Status == http.StatusForbidden {
		d.Meaning = "OCI authenticated the request but the principal's policies do not allow it"
	}
}

// details is every profile and status seen, by profile then status.
func (r *ociRefusals) details() []refusalDetail {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]refusalDetail, 0, len(r.seen))
	for _, d := range r.seen {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b refusalDetail) int {
		if c := strings.Compare(a.Profile, b.Profile); c != 0 {
			return c
		}
		return a.Status - b.Status
	})
	return out
}

// observers is the service's extproc.Observer: the metrics of every
// request, and OCI's refusals.
type observers struct {
	*metrics
	*ociRefusals
}
