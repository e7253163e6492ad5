package main

import (
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
)

// FuzzMetricLabels: whatever a client sends as method or whatever outcome
// string reaches the metrics, the label is one of a closed set.
func FuzzMetricLabels(f *testing.F) {
	f.Add("GET", "signed")
	f.Add("get", "HostNotAllowed")
	f.Add("FROBNICATE", "")
	f.Add("M\x00\xff", "signed\n")
	closedMethods := map[string]bool{otherMethod: true}
	for m := range standardMethods {
		closedMethods[m] = true
	}
	closedOutcomes := map[string]bool{otherOutcome: true, extproc.OutcomeSigned: true}
	for _, c := range extproc.Codes {
		closedOutcomes[c] = true
	}
	f.Fuzz(func(t *testing.T, method, outcome string) {
		if m := methodLabel(method); !closedMethods[m] || (m != otherMethod && m != method) {
			t.Fatalf("method %q labelled %q", method, m)
		}
		if o := outcomeLabel(outcome); !closedOutcomes[o] || (o != otherOutcome && o != outcome) {
			t.Fatalf("outcome %q labelled %q", outcome, o)
		}
	})
}
