package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

// policyFor is a policy that gives caller key:k the profile and rule name.
func policyFor(name string) string {
	return "version: 1\nrules:\n  - name: " + name + "\n    callers: [key: k]\n    profiles: [" + name + "-profile]\n    services: [genai]\n    methods: [GET]\n"
}

var keyK = &Caller{Key: "k"}
var genaiGET = Request{Alias: "genai", Method: "GET"}

func profileOf(w *Watcher[Policy]) string { return w.Current().Decide(keyK, genaiGET).Profile }

// writeRename replaces path as editors and kubectl do: a reader sees the
// old file or the new one.
func writeRename(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type events struct {
	mu  sync.Mutex
	all []ReloadEvent
	ch  chan ReloadEvent
}

func newEvents() *events { return &events{ch: make(chan ReloadEvent, 1000)} }

func (e *events) hook(ev ReloadEvent) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.ch <- ev
}

func (e *events) list() []ReloadEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ReloadEvent(nil), e.all...)
}

// settle checks twice an interval apart: how Run sees a version.
func settle(t testing.TB, w *Watcher[Policy], clock *credentialstest.Clock) error {
	t.Helper()
	w.Check()
	clock.Advance(DefaultInterval)
	return w.Check()
}

func TestWatchStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - name: x\n    colers: []\n"), 0o600)
	_, err := WatchPolicy(bad)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 4 || !strings.HasPrefix(err.Error(), bad+":4:5: rule 1 (x): unknown key") {
		t.Fatalf("a bad file at start: %v", err)
	}
	if _, err := WatchPolicy(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("a missing file: %v", err)
	}
	if _, err := WatchPolicy(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a folder: %v", err)
	}
	if _, err := WatchKeys(bad); !errors.Is(err, ErrInvalidKeys) {
		t.Fatalf("a policy as the keys file: %v", err)
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeRename(t, path, policyFor("one"))
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	ev := newEvents()
	var logs strings.Builder
	w, err := WatchPolicy(path, WithClock(clock), WithOnReload(ev.hook), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if got := profileOf(w); got != "one-profile" {
		t.Fatalf("at start: %q", got)
	}

	// good to bad: the good one stays, the failure is reported once, with its line.
	writeRename(t, path, policyFor("two")+"    extra: 1\n")
	if err := settle(t, w, clock); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("Check: %v", err)
	}
	w.Check()
	clock.Advance(DefaultInterval)
	w.Check()
	if got := profileOf(w); got != "one-profile" {
		t.Fatalf("after a bad version: %q", got)
	}
	if got := ev.list(); len(got) != 1 || got[0].Err == nil || got[0].Failures != 1 || !strings.Contains(got[0].Err.Error(), ":8:5: rule 1 (two): unknown key \"extra\"") {
		t.Fatalf("events: %+v", got)
	}
	// Another bad one counts again.
	writeRename(t, path, "version: 2\nrules: []\n")
	settle(t, w, clock)
	if got := ev.list(); len(got) != 2 || got[1].Failures != 2 {
		t.Fatalf("events: %+v", got)
	}
	// good to good swaps.
	writeRename(t, path, policyFor("three"))
	if err := settle(t, w, clock); err != nil {
		t.Fatal(err)
	}
	if got := profileOf(w); got != "three-profile" {
		t.Fatalf("after a good version: %q", got)
	}
	if got := ev.list(); len(got) != 3 || got[2].Err != nil || got[2].Failures != 0 {
		t.Fatalf("events: %+v", got)
	}
	for _, want := range []string{`level=WARN msg="new policy file is not usable; keeping the last good one"`, "failures=2", `level=INFO msg="policy file reloaded"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("%q not logged:\n%s", want, logs.String())
		}
	}
	// The file gone: the last good stays, said once.
	os.Remove(path)
	w.Check()
	w.Check()
	if got := ev.list(); len(got) != 4 || !strings.Contains(got[3].Err.Error(), "does not exist") || profileOf(w) != "three-profile" {
		t.Fatalf("events: %+v", got)
	}
	writeRename(t, path, policyFor("four"))
	settle(t, w, clock)
	if got := profileOf(w); got != "four-profile" {
		t.Fatalf("after the file came back: %q", got)
	}
}

// A version is read only once it has stayed as it is for an interval: a
// writer part-way through an in-place rewrite is never read.
func TestInPlaceWriteIsReadOnceSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeRename(t, path, policyFor("one"))
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	w, err := WatchPolicy(path, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	// A prefix of the next version that is a valid policy by itself, and
	// means something else: one profile, which is then the default.
	prefix := "version: 1\nrules:\n  - name: two\n    callers: [key: k]\n    services: [genai]\n    methods: [GET]\n    profiles:\n      - x\n"
	full := prefix + "      - y\n    default_profile: y\n"
	if d := mustParse(t, prefix).Decide(keyK, genaiGET); d.Profile != "x" {
		t.Fatalf("the prefix must parse, and differ, for the test to mean anything: %+v", d)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(prefix)
	w.Check() // sees the prefix: not settled
	clock.Advance(DefaultInterval / 2)
	w.Check()
	f.WriteString(full[len(prefix):])
	f.Close()
	clock.Advance(DefaultInterval / 2)
	w.Check() // an interval after the prefix was first seen, but the file changed since
	if got := profileOf(w); got != "one-profile" {
		t.Fatalf("a part-written file was read: %q", got)
	}
	clock.Advance(DefaultInterval)
	w.Check()
	if d := w.Current().Decide(keyK, genaiGET); d.Rule != "two" || d.Profile != "y" {
		t.Fatalf("the whole file, settled: %+v", d)
	}
}

func TestRunPollsOnTheClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeRename(t, path, policyFor("one"))
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	ev := newEvents()
	w, err := WatchPolicy(path, WithClock(clock), WithInterval(time.Minute), WithOnReload(ev.hook))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	writeRename(t, path, policyFor("two"))
	// Move the clock until the loop has polled twice a minute apart; the
	// loop may not be waiting yet when the clock first moves.
	deadline := time.After(10 * time.Second)
	for loaded := false; !loaded; {
		clock.Advance(time.Minute)
		select {
		case e := <-ev.ch:
			loaded = e.Err == nil
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatal("Run never reloaded the file")
		}
	}
	if got := profileOf(w); got != "two-profile" {
		t.Fatalf("%q", got)
	}
	cancel()
	<-done
}

func TestKeysReloadRevokes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	a, _ := AddKey(path, "a")
	b, _ := AddKey(path, "b")
	clock := credentialstest.NewClock(time.Unix(1e9, 0))
	w, err := WatchKeys(path, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if name, err := w.Current().Lookup(a); name != "a" || err != nil {
		t.Fatalf("%q %v", name, err)
	}
	if err := RevokeKey(path, "a"); err != nil {
		t.Fatal(err)
	}
	w.Check()
	clock.Advance(DefaultInterval)
	w.Check()
	if _, err := w.Current().Lookup(a); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a revoked key still works: %v", err)
	}
	if name, _ := w.Current().Lookup(b); name != "b" {
		t.Fatal("the other key stopped working")
	}
	c, _ := AddKey(path, "c")
	w.Check()
	clock.Advance(DefaultInterval)
	w.Check()
	if name, _ := w.Current().Lookup(c); name != "c" {
		t.Fatal("a new key does not work after a reload")
	}
}
