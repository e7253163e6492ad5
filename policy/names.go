package policy

// RuleNames returns the names of the policy's rules, in order: with the
// three fixed labels (LabelNoPolicy, LabelUnauthenticated, LabelNoRule),
// every value Decision.MetricLabel can take under this policy. A metrics
// collector keeps its label values to these.
func (p *Policy) RuleNames() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.rules))
	for i, ru := range p.rules {
		out[i] = ru.name
	}
	return out
}
