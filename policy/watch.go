package policy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the time a Watcher polls by; credentialstest.Clock satisfies it,
// so that tests move time by hand.
type Clock interface {
	Now() time.Time
	// Until returns a channel that receives once the clock reaches t.
	Until(t time.Time) <-chan time.Time
}

// SystemClock is the real time.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                     { return time.Now() }
func (systemClock) Until(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// DefaultInterval is how often a Watcher looks at its file.
const DefaultInterval = 2 * time.Second

// ReloadEvent reports what a Watcher did with a new version of its file,
// for a metric and a log line.
type ReloadEvent struct {
	File string
	// Err is why the new version was not used (the last good one stays);
	// nil when it was loaded.
	Err error
	// Failures counts the versions in a row that failed, this one included;
	// 0 after a load.
	Failures int
}

// Option configures a Watcher.
type Option func(*watchOptions)

type watchOptions struct {
	clock    Clock
	interval time.Duration
	onReload func(ReloadEvent)
	log      *slog.Logger
}

// WithClock sets the clock Run polls by (SystemClock by default).
func WithClock(c Clock) Option { return func(o *watchOptions) { o.clock = c } }

// WithInterval sets how often Run checks the file (DefaultInterval).
func WithInterval(d time.Duration) Option { return func(o *watchOptions) { o.interval = d } }

// WithOnReload sets a hook called after each reload and each failed one,
// outside any lock.
func WithOnReload(f func(ReloadEvent)) Option { return func(o *watchOptions) { o.onReload = f } }

// WithLogger logs each reload (info) and each failed one (warning).
func WithLogger(l *slog.Logger) Option { return func(o *watchOptions) { o.log = l } }

// Watcher holds the current version of a file, parsed, and replaces it when
// the file changes. Readers call Current, which never blocks and never
// sees a half-made value: a new version is parsed whole, then swapped in
// by one atomic store. A version that does not parse keeps the last good
// one and is reported once.
//
// A change is noticed by stat (the same file, size and modification time,
// as credentials' watch), and read only once it has stayed so for one
// interval, from one poll to the next: a writer part-way through (a file
// rewritten in place, truncated then written) is not read unless it stalls
// for a whole interval. A file that changes while it is read is read again.
// A reload thus takes one to two intervals. Writing by rename, as editors,
// kubectl and ConfigMap volumes do, is safe in any case.
type Watcher[T any] struct {
	path  string
	what  string
	limit int // bytes read at most; the parser refuses a file larger
	parse func([]byte, string) (*T, error)
	opts  watchOptions
	cur   atomic.Pointer[T]

	mu           sync.Mutex // one check at a time
	loaded       os.FileInfo
	pending      os.FileInfo // a new version, not yet settled
	pendingSince time.Time
	failed       os.FileInfo // the version that failed last
	lastErr      error
	failures     int
}

// WatchPolicy reads the policy file at path, and returns a Watcher that
// reloads it. An error here is the operator's to fix before starting (the
// CLI exits 2 with it): a *ParseError with the line when the file does not
// parse.
func WatchPolicy(path string, opts ...Option) (*Watcher[Policy], error) {
	return watch(path, "policy file", MaxPolicyBytes, Parse, opts)
}

// WatchKeys reads the keys file at path, and returns a Watcher that
// reloads it: a removed line revokes its key at the next poll.
func WatchKeys(path string, opts ...Option) (*Watcher[Keys], error) {
	return watch(path, "keys file", MaxKeysBytes, ParseKeys, opts)
}

func watch[T any](path, what string, limit int, parse func([]byte, string) (*T, error), opts []Option) (*Watcher[T], error) {
	w := &Watcher[T]{path: path, what: what, limit: limit, parse: parse, opts: watchOptions{clock: SystemClock, interval: DefaultInterval}}
	for _, o := range opts {
		o(&w.opts)
	}
	if w.opts.log == nil {
		w.opts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var err error
	for range 3 { // a file that changes while read is read again
		var v *T
		var fi os.FileInfo
		fi, v, err = w.read()
		if err == nil && fi != nil {
			w.cur.Store(v)
			w.loaded = fi
			return w, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s %s kept changing while it was read; write it by rename", what, path)
}

// read stats, reads and parses the file. fi is nil (and err too) when the
// file changed while it was read.
func (w *Watcher[T]) read() (fi os.FileInfo, v *T, err error) {
	before, err := os.Stat(w.path)
	if err != nil {
		return nil, nil, fileError(w.path, w.what, err)
	}
	data, err := readBounded(w.path, w.limit, w.what)
	if err != nil {
		return nil, nil, err
	}
	after, err := os.Stat(w.path)
	if err != nil {
		return nil, nil, fileError(w.path, w.what, err)
	}
	if !sameVersion(before, after) {
		return nil, nil, nil
	}
	v, err = w.parse(data, w.path)
	return before, v, err
}

// Current returns the version in use; nil for a nil Watcher (no file was
// configured: for a policy, the nil policy that allows as before).
func (w *Watcher[T]) Current() *T {
	if w == nil {
		return nil
	}
	return w.cur.Load()
}

// Check looks at the file once and loads a new version if there is one
// ready. It returns the error of the version on disk, if that failed.
func (w *Watcher[T]) Check() error {
	w.mu.Lock()
	ev, report := w.check()
	err := w.lastErr
	w.mu.Unlock()
	if report {
		w.report(ev)
	}
	return err
}

func (w *Watcher[T]) check() (ReloadEvent, bool) {
	fi, err := os.Stat(w.path)
	if err != nil {
		err = fileError(w.path, w.what, err)
		if w.lastErr != nil && w.failed == nil && w.lastErr.Error() == err.Error() {
			return ReloadEvent{}, false // said already
		}
		return w.fail(nil, err), true
	}
	switch {
	case sameVersion(fi, w.loaded):
		w.pending, w.failed, w.lastErr, w.failures = nil, nil, nil, 0
		return ReloadEvent{}, false
	case w.failed != nil && sameVersion(fi, w.failed):
		return ReloadEvent{}, false // said already
	case !w.settled(fi):
		return ReloadEvent{}, false
	}
	read, v, err := w.read()
	switch {
	case read == nil && err == nil, read != nil && !sameVersion(read, fi):
		// Changed since it settled, or while it was read: not this
		// version, whatever it says; the next polls look again.
		w.pending = nil
		return ReloadEvent{}, false
	case err != nil:
		return w.fail(read, err), true
	}
	w.cur.Store(v)
	w.loaded, w.pending, w.failed, w.lastErr, w.failures = read, nil, nil, nil, 0
	return ReloadEvent{File: w.path}, true
}

// settled: a version is read once it has stayed as it is for an interval
// (by the clock), that is, from one poll to the next.
func (w *Watcher[T]) settled(fi os.FileInfo) bool {
	now := w.opts.clock.Now()
	if w.pending != nil && sameVersion(fi, w.pending) {
		return !now.Before(w.pendingSince.Add(w.opts.interval))
	}
	w.pending, w.pendingSince = fi, now
	return false
}

func (w *Watcher[T]) fail(fi os.FileInfo, err error) ReloadEvent {
	w.failed, w.pending, w.lastErr = fi, nil, err
	w.failures++
	return ReloadEvent{File: w.path, Err: err, Failures: w.failures}
}

func (w *Watcher[T]) report(ev ReloadEvent) {
	if ev.Err != nil {
		w.opts.log.Warn("new "+w.what+" is not usable; keeping the last good one", "file", ev.File, "error", ev.Err.Error(), "failures", ev.Failures)
	} else {
		w.opts.log.Info(w.what+" reloaded", "file", ev.File)
	}
	if w.opts.onReload != nil {
		w.opts.onReload(ev)
	}
}

// Run checks the file every interval until ctx ends.
func (w *Watcher[T]) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.opts.clock.Until(w.opts.clock.Now().Add(w.opts.interval)):
			w.Check()
		}
	}
}

// sameVersion: the same file (inode), size and modification time.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
