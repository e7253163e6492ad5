package extproctest

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// pump reads the downstream body in the background while the filter waits for the
// processor, which is how Envoy keeps reading a connection while ext_proc holds the request
// in BUFFERED mode (the data lands in the filter's buffer, with a 413 once it passes the
// limit, also while the headers answer is pending: ext_proc.cc Filter::onData returns
// StopIterationAndBuffer, and filter_manager.cc ActiveStreamDecoderFilter::requestDataTooLarge
// answers 413; filter.go says more).
// It is only used for BUFFERED bodies; NONE bodies are copied straight to the upstream and
// never pass through memory.
type pump struct {
	ch   chan chunk
	stop chan struct{}
	done chan struct{}

	stopOnce sync.Once
	leftover chunk // read but not delivered when stopped; written before done closes
}

type chunk struct {
	data []byte
	err  error // io.EOF at the end of the body
}

func (e *Envoy) startPump(body io.Reader) *pump {
	p := &pump{ch: make(chan chunk), stop: make(chan struct{}), done: make(chan struct{})}
	e.goTracked(func() {
		defer close(p.done)
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			n, err := body.Read(buf)
			if n == 0 && err == nil {
				continue
			}
			c := chunk{data: bytes.Clone(buf[:n]), err: err}
			select {
			case p.ch <- c:
			case <-p.stop:
				p.leftover = c
				return
			}
			if err != nil {
				return
			}
		}
	})
	return p
}

// halt stops the pump and returns what it had read but not delivered. It waits for a read in
// progress to finish, so the caller can go on reading the body itself.
func (p *pump) halt() chunk {
	p.abandon()
	<-p.done
	return p.leftover
}

// abandon stops the pump without waiting, when the request is over anyway.
func (p *pump) abandon() {
	p.stopOnce.Do(func() { close(p.stop) })
}

// downstreamBody is the request body as the filter chain reads it (through the pump or the
// upstream writer). It records a client that went away (a read error, as opposed to an
// upstream failing while the body is copied to it), signals the end of the body, and can be
// stopped so nothing reads the body after ServeHTTP returns, which net/http forbids.
type downstreamBody struct {
	r       io.Reader
	eof     chan struct{}
	mu      sync.Mutex
	err     error
	reading bool
	stopped bool
	eofOnce sync.Once
}

var errBodyStopped = errors.New("extproctest: request finished")

func newDownstreamBody(r io.Reader) *downstreamBody {
	return &downstreamBody{r: r, eof: make(chan struct{})}
}

func (d *downstreamBody) Read(p []byte) (int, error) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return 0, errBodyStopped
	}
	d.reading = true
	d.mu.Unlock()

	n, err := d.r.Read(p)

	d.mu.Lock()
	d.reading = false
	if err != nil && !errors.Is(err, io.EOF) && d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
	if errors.Is(err, io.EOF) {
		d.eofOnce.Do(func() { close(d.eof) })
	}
	return n, err
}

// failed returns the read error that ended the body, if the client went away.
func (d *downstreamBody) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// stop makes later reads fail and reports whether a read is in progress, which the caller
// must then interrupt (with a read deadline on the connection).
func (d *downstreamBody) stop() (reading bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	return d.reading
}
