package credentials

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// refreshLoop is the one background loop of a Store: it fetches every
// source's credentials ahead of the first request, refreshes them ahead of
// expiry and retries failed refreshes with backoff, sleeping on its Clock in
// between. The Store owns it and closes it.
type refreshLoop struct {
	clock Clock
	log   *slog.Logger

	mu      sync.Mutex
	members map[member]struct{}
	closed  bool

	kick    chan struct{}
	ctx     context.Context // ends in-flight refreshes on Close
	cancel  context.CancelFunc
	done    chan struct{}
	running sync.WaitGroup
}

// member is a cache as the loop sees it.
type member interface {
	due() time.Time
	begin() bool
	refresh(ctx context.Context)
}

// newLoop starts a loop on clock (nil: the real time), logging to log (nil:
// nowhere).
func newLoop(clock Clock, log *slog.Logger) *refreshLoop {
	if clock == nil {
		clock = systemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &refreshLoop{clock: clock, log: log, members: map[member]struct{}{}, kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go l.run()
	return l
}

// Close stops the loop and waits for refreshes under way to end; their
// requests are cancelled. It is safe to call more than once.
func (l *refreshLoop) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	<-l.done
	l.running.Wait()
	return nil
}

func (l *refreshLoop) add(m member) {
	l.mu.Lock()
	if !l.closed {
		l.members[m] = struct{}{}
	}
	l.mu.Unlock()
	l.poke()
}

func (l *refreshLoop) remove(m member) {
	l.mu.Lock()
	delete(l.members, m)
	l.mu.Unlock()
}

// poke makes the loop look at its members again.
func (l *refreshLoop) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *refreshLoop) run() {
	defer close(l.done)
	for {
		now := l.clock.Now()
		var next time.Time
		l.mu.Lock()
		for m := range l.members {
			at := m.due()
			switch {
			case at.IsZero():
			case !at.After(now):
				if m.begin() {
					l.running.Add(1)
					go func() {
						defer l.running.Done()
						m.refresh(l.ctx)
						l.poke()
					}()
				}
			case next.IsZero() || at.Before(next):
				next = at
			}
		}
		l.mu.Unlock()
		var wake <-chan time.Time
		if !next.IsZero() {
			wake = l.clock.Until(next)
		}
		select {
		case <-l.ctx.Done():
			return
		case <-l.kick:
		case <-wake:
		}
	}
}
