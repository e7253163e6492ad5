package main

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
)

// metrics are ocisigner's Prometheus metrics, on a registry of their own so
// tests can read them.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	signing     prometheus.Histogram
	bodyBytes   prometheus.Counter
	tokenExpiry *prometheus.GaugeVec
	probeOK     prometheus.Gauge
	probeTime   prometheus.Gauge
	refreshes   *prometheus.CounterVec
	failing     *prometheus.GaugeVec
	profiles    func() []string // profile names a label may carry
	policy      *policyMetrics  // with --policy only

	mu    sync.Mutex
	known map[string]bool
	at    time.Time
}

// newMetrics makes the metrics; the probe's only when probing is on (a
// probe_success of 0 for a probe that never runs would page someone).
func newMetrics(profiles func() []string, probing bool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_requests_total",
			Help: "Requests handled, by profile, method and outcome (signed, or the refusal code).",
		}, []string{"profile", "method", "outcome"}),
		signing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ocisigner_signing_duration_seconds",
			Help:    "Time to compute one signature (RSA dominates).",
			Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1},
		}),
		bodyBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocisigner_body_bytes_hashed_total",
			Help: "Request body bytes hashed into signatures.",
		}),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ocisigner_token_expiry_timestamp_seconds",
			Help: "When each profile's security token expires, as a Unix timestamp.",
		}, []string{"profile"}),
		probeOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ocisigner_probe_success",
			Help: "1 if the last namespace probe got a 200, else 0.",
		}),
		probeTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ocisigner_probe_timestamp_seconds",
			Help: "When the last namespace probe ran, as a Unix timestamp.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_credential_fetches_total",
			Help: "Background fetches of credentials (ahead of first use, refreshes, retries), by source and outcome (ok, failed).",
		}, []string{"source", "outcome"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ocisigner_credential_fetch_failures",
			Help: "Background fetches of a source that failed in a row; 0 once one succeeds. The last good credentials stay in use until they expire.",
		}, []string{"source"}),
		profiles: profiles,
		known:    map[string]bool{},
	}
	if probing {
		m.reg.MustRegister(m.probeOK, m.probeTime)
	}
	m.reg.MustRegister(m.requests, m.signing, m.bodyBytes, m.tokenExpiry, m.refreshes, m.failing,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ocisigner_build_info",
			Help:        "Always 1; the version and the RSA implementation (signer.Backend) are labels.",
			ConstLabels: prometheus.Labels{"version": version, "rsa_backend": signer.Backend()},
		}, func() float64 { return 1 }))
	return m
}

// Observe implements extproc.Observer.
func (m *metrics) Observe(ev extproc.Event) {
	profile := m.profileLabel(ev.Profile)
	m.requests.WithLabelValues(profile, methodLabel(ev.Method), outcomeLabel(ev.Outcome)).Inc()
	m.policy.observe(ev)
	if ev.Outcome == extproc.OutcomeSigned {
		m.signing.Observe(ev.SignDuration.Seconds())
		m.bodyBytes.Add(float64(ev.BodyBytes))
		if !ev.Expiry.IsZero() && profile != unknownProfile {
			m.tokenExpiry.WithLabelValues(profile).Set(float64(ev.Expiry.Unix()))
		}
	}
}

// observeRefresh implements credentials.WithObserver.
// Its sources are the store's own profiles, not names a client chose.
func (m *metrics) observeRefresh(ev credentials.RefreshEvent) {
	source := ev.Source
	outcome := "ok"
	if ev.Err != nil {
		outcome = "failed"
	}
	m.refreshes.WithLabelValues(source, outcome).Inc()
	m.failing.WithLabelValues(source).Set(float64(ev.Failures))
	if !ev.Expires.IsZero() && ev.Err == nil {
		m.tokenExpiry.WithLabelValues(source).Set(float64(ev.Expires.Unix()))
	}
}

// setTokenExpiry records the expiry of a profile's credentials, if they expire.
func (m *metrics) setTokenExpiry(profile string, c *signer.Credentials) {
	if c != nil && !c.Expiry().IsZero() {
		m.tokenExpiry.WithLabelValues(profile).Set(float64(c.Expiry().Unix()))
	}
}

func (m *metrics) recordProbe(r probeResult) {
	ok := 0.0
	if r.OK {
		ok = 1
	}
	m.probeOK.Set(ok)
	m.probeTime.Set(float64(r.At.Unix()))
}

// Label values for what a client sent that is not in the closed sets.
const (
	otherMethod    = "OTHER"
	unknownProfile = "(unknown)"
	otherOutcome   = "other"
)

// standardMethods are the methods of RFC 9110 and PATCH: any other method a
// client sends is counted as OTHER, so a client sending random methods
// cannot grow the metric (each series costs memory and /metrics bytes).
var standardMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true, http.MethodTrace: true,
}

func methodLabel(m string) string {
	if standardMethods[m] {
		return m
	}
	return otherMethod
}

var outcomes = func() map[string]bool {
	m := map[string]bool{extproc.OutcomeSigned: true}
	for _, c := range append(slices.Clone(extproc.Codes), policy.Codes...) {
		m[c] = true
	}
	return m
}()

func outcomeLabel(o string) string {
	if outcomes[o] {
		return o
	}
	return otherOutcome
}

// profileLabel keeps label values to the profiles the config has: a client
// naming profiles at random must not grow the metric without bound.
func (m *metrics) profileLabel(p string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.known[p] {
		return p
	}
	// Looked up again at most once a second (a client naming random
	// profiles must not make every request list the config), or at once
	// while none are known yet (the store still opening).
	if time.Since(m.at) > time.Second || len(m.known) == 0 {
		m.known = map[string]bool{}
		for _, n := range m.profiles() {
			m.known[n] = true
		}
		if len(m.known) > 0 {
			m.at = time.Now()
		}
		if m.known[p] {
			return p
		}
	}
	return unknownProfile
}
