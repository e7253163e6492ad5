package extproctest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// noEnvoyRule are the files that model no Envoy behaviour, and why.
var noEnvoyRule = map[string]string{
	"doc.go":                "the package's documentation",
	"envoy.go":              "the stand-in's own lifecycle: listeners, goroutines, Close",
	"stats.go":              "the stand-in's counters for tests, not Envoy's stats",
	"bootstrap_identity.go": "reads configuration into Config; the rules it feeds cite Envoy where they run",
}

// envoySource is a citation of an Envoy source file (ext_proc.cc,
// conn_manager_utility.cc, ...).
var envoySource = regexp.MustCompile(`\b[a-z0-9_]+\.(cc|h)\b`)

// Every file that models Envoy names the Envoy source it follows: the
// stand-in must behave as Envoy's source does, not as a summary says, and a
// rule without its source cannot be checked against it.
func TestEveryFileCitesEnvoy(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		n++
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, exempt := noEnvoyRule[f]
		cites := envoySource.Match(data)
		switch {
		case !exempt && !cites:
			t.Errorf("%s models Envoy without citing its source (file and function)", f)
		case exempt && cites:
			t.Errorf("%s cites Envoy's source: take it out of noEnvoyRule", f)
		}
	}
	for f := range noEnvoyRule {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("noEnvoyRule names %s: %v", f, err)
		}
	}
	if n < 10 {
		t.Fatalf("read %d files", n)
	}
}
