package main

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
)

// policyMetrics count what the policy decided, by rule, and the reloads of
// the policy and keys files. Labels come from closed sets whoever calls:
// the rules of the policy in force and policy's three fixed labels (a
// caller's label, as many values as callers, is never a metric label).
type policyMetrics struct {
	byRule  *prometheus.CounterVec
	reloads *prometheus.CounterVec
	failing *prometheus.GaugeVec
	rules   atomic.Pointer[ruleSet]
	current func() *policy.Policy
}

// ruleSet is the rule names of one policy version.
type ruleSet struct {
	p     *policy.Policy
	names map[string]bool
}

// otherRule is the label of a rule name the policy in force does not have
// (a rule removed by a reload while its request was in flight).
const otherRule = "_other"

func newPolicyMetrics(reg *prometheus.Registry, current func() *policy.Policy) *policyMetrics {
	m := &policyMetrics{
		byRule: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_policy_requests_total",
			Help: "Requests a policy decided, by the rule that decided (or _unauthenticated, _no_rule) and outcome (signed, or the refusal code).",
		}, []string{"rule", "outcome"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocisigner_policy_reloads_total",
			Help: "New versions of the policy and keys files, by file (policy, keys) and outcome (ok, or failed: the last good version stays in use).",
		}, []string{"file", "outcome"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ocisigner_policy_reload_failures",
			Help: "Versions in a row of the policy or keys file that did not load; 0 once one does.",
		}, []string{"file"}),
		current: current,
	}
	reg.MustRegister(m.byRule, m.reloads, m.failing)
	for _, f := range []string{"policy", "keys"} {
		m.failing.WithLabelValues(f).Set(0)
	}
	return m
}

// observe counts a request a policy decided.
func (m *policyMetrics) observe(ev extproc.Event) {
	if m == nil || ev.Rule == "" {
		return
	}
	m.byRule.WithLabelValues(m.ruleLabel(ev.Rule), outcomeLabel(ev.Outcome)).Inc()
}

// ruleLabel keeps the label to the policy's rules and the fixed labels. The
// set is rebuilt when the policy in force is another one than it was made
// for.
func (m *policyMetrics) ruleLabel(rule string) string {
	switch rule {
	case policy.LabelNoPolicy, policy.LabelUnauthenticated, policy.LabelNoRule:
		return rule
	}
	p := m.current()
	rs := m.rules.Load()
	if rs == nil || rs.p != p {
		rs = &ruleSet{p: p, names: map[string]bool{}}
		for _, n := range p.RuleNames() {
			rs.names[n] = true
		}
		m.rules.Store(rs)
	}
	if rs.names[rule] {
		return rule
	}
	return otherRule
}

// reloaded counts a reload of file ("policy" or "keys").
func (m *policyMetrics) reloaded(file string, ev policy.ReloadEvent) {
	outcome := "ok"
	if ev.Err != nil {
		outcome = "failed"
	}
	m.reloads.WithLabelValues(file, outcome).Inc()
	m.failing.WithLabelValues(file).Set(float64(ev.Failures))
}
