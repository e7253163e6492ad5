package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocisigner/ocisigner/intercept"
)

// interceptMetrics are the SDS's metrics. Every label comes from a closed
// set: a client choosing SNI names at random cannot grow them (names are
// never labels).
type interceptMetrics struct {
	certificates *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	evictions    *prometheus.CounterVec
	nacks        prometheus.Counter
	reg          *prometheus.Registry
}

// interceptReasons are the reasons of refusals and evictions.
var interceptReasons = map[string]bool{
	intercept.ReasonInvalidName: true, intercept.ReasonPolicy: true, intercept.ReasonRateLimited: true,
	intercept.ReasonOverloaded: true, intercept.ReasonMintFailed: true, intercept.ReasonCapacity: true,
	intercept.ReasonUnsubscribed: true, intercept.ReasonNACK: true,
}

func newInterceptMetrics(reg *prometheus.Registry) *interceptMetrics {
	m := &interceptMetrics{
		certificates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_intercept_certificates_total",
			Help: "Certificates minted for Envoy's on-demand TLS, by event: minted (a newly subscribed name) or rotated (replaced before expiry).",
		}, []string{"event"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_intercept_refusals_total",
			Help: "Names refused a certificate (the handshake fails), by reason: policy, invalid_name, rate_limited, overloaded, mint_failed.",
		}, []string{"reason"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_intercept_evictions_total",
			Help: "Live names dropped, by reason: capacity, unsubscribed, policy, nack, mint_failed.",
		}, []string{"reason"}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocisigner_intercept_nacks_total",
			Help: "Certificates Envoy rejected.",
		}),
		reg: reg,
	}
	reg.MustRegister(m.certificates, m.refusals, m.evictions, m.nacks)
	return m
}

// watch adds the gauges of the SDS's bounded state, read at each scrape.
func (m *interceptMetrics) watch(sds *intercept.SDS) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocisigner_intercept_live_names",
			Help: "Host names with a live certificate (bounded by --intercept-max-names).",
		}, func() float64 { return float64(sds.Stats().LiveNames) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocisigner_intercept_sds_streams",
			Help: "Delta SDS streams open (Envoy opens one per name).",
		}, func() float64 { return float64(sds.Stats().Streams) }),
	)
}

// Observe implements intercept.Observer; it runs under the SDS's lock and
// only moves counters.
func (m *interceptMetrics) Observe(ev intercept.Event) {
	reason := ev.Reason
	if !interceptReasons[reason] {
		reason = otherOutcome
	}
	switch ev.Kind {
	case intercept.EventMinted, intercept.EventRotated:
		m.certificates.WithLabelValues(ev.Kind.String()).Inc()
	case intercept.EventRefused:
		m.refusals.WithLabelValues(reason).Inc()
	case intercept.EventEvicted:
		m.evictions.WithLabelValues(reason).Inc()
	case intercept.EventNACK:
		m.nacks.Inc()
	}
}
