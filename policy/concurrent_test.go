package policy

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

// bigPolicy is a policy whose rule for key:k comes last, after many
// one-line rules: any prefix of the file cut at a line end is a valid
// policy without it, and one cut elsewhere may be one that means
// something else. A decision under a half-read file would show.
func bigPolicy(v string) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range 20 {
		fmt.Fprintf(&b, "  - {name: filler-%d, callers: [key: other-%d], profiles: [f], services: [genai], methods: [GET]}\n", i, i)
	}
	fmt.Fprintf(&b, "  - name: final-%s\n    callers:\n      - key: k\n    services: [genai]\n    methods: [GET]\n    genai:\n      compartment: ocid1.compartment.oc1..%s\n    profiles:\n      - p%s\n", v, v, v)
	return b.String()
}

type outcome struct {
	allowed              bool
	rule, profile, compt string
}

func outcomeOf(d Decision) outcome { return outcome{d.Allowed, d.Rule, d.Profile, d.Compartment} }

// While one goroutine rewrites the policy file, by rename and in place
// (truncated, part written, then the rest), another polls it, and four
// decide: every decision is the whole of one version or of the other.
func TestNoDecisionSeesAHalfReadPolicy(t *testing.T) {
	versions := map[string]string{"a": bigPolicy("a"), "b": bigPolicy("b")}
	want := map[outcome]string{}
	for v, src := range versions {
		want[outcomeOf(mustParse(t, src).Decide(keyK, genaiGET))] = v
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeRename(t, path, versions["a"])
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	var failures atomic.Int64
	w, err := WatchPolicy(path, WithClock(clock), WithOnReload(func(ev ReloadEvent) {
		if ev.Err != nil {
			failures.Add(1)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var checks atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the poller, as fast as it can
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			w.Check()
			checks.Add(1)
			runtime.Gosched()
		}
	}()
	var decisions atomic.Int64
	seen := make([]map[string]bool, 4)
	errs := make(chan string, len(seen))
	for g := range seen {
		seen[g] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := w.Current().Decide(keyK, genaiGET)
				v, ok := want[outcomeOf(d)]
				if !ok {
					errs <- fmt.Sprintf("a decision of neither version: %+v", d)
					return
				}
				seen[g][v] = true
				decisions.Add(1)
				runtime.Gosched() // two cores: let the poller and the writer run
			}
		}()
	}
	// waitChecks lets the poller look at the file as it is now, twice.
	waitChecks := func() {
		for n := checks.Load() + 2; checks.Load() < n; {
			runtime.Gosched()
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const rounds = 24
	for i := range rounds {
		v := []string{"b", "a"}[i%2]
		src := versions[v]
		if i%3 == 0 {
			writeRename(t, path, src)
		} else {
			// In place: truncated, then written in two parts; the poller
			// sees each state, but the clock does not move meanwhile.
			cut := rng.IntN(len(src))
			if i%3 == 1 {
				cut = strings.LastIndex(src[:cut+1], "\n") + 1 // a prefix that parses
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			waitChecks()
			f.WriteString(src[:cut])
			waitChecks()
			f.WriteString(src[cut:])
			f.Close()
		}
		// The writer is done: time passes until the poller loads it.
		for tries := 0; want[outcomeOf(w.Current().Decide(keyK, genaiGET))] != v; tries++ {
			if tries > 1000 {
				t.Fatalf("round %d: version %s never loaded", i, v)
			}
			clock.Advance(DefaultInterval)
			waitChecks()
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	for g, s := range seen {
		if !s["a"] || !s["b"] {
			t.Errorf("decider %d saw only %v: the swaps were not exercised", g, s)
		}
	}
	if failures.Load() != 0 {
		t.Errorf("%d part-written versions were parsed and reported: they should not have been read at all", failures.Load())
	}
	t.Logf("%d decisions, %d checks, %d rounds", decisions.Load(), checks.Load(), rounds)
}
