package extproctest

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// session is one ext_proc gRPC stream, driven the way Envoy's ProcessorStreamImpl drives it
// (source/extensions/filters/http/ext_proc/client_impl.cc): messages are sent
// asynchronously, answers and the final status come back as events, and close() is
// ProcessorStreamImpl::close (half-close, then reset at once) or, with GracefulClose,
// halfCloseAndDeleteOnRemoteClose (half-close, reset only if the server has not finished
// within the remote close timeout).
//
// The filter never blocks on gRPC: a send that is stuck on flow control, or a stream that
// cannot connect, shows up as a message timeout, as it does in Envoy.
type session struct {
	e      *Envoy
	ctx    context.Context
	cancel context.CancelFunc
	ops    chan *extprocv3.ProcessingRequest
	events chan event

	sendMu sync.Mutex // serialises Send and CloseSend, which grpc-go forbids concurrently
	stream extprocv3.ExternalProcessor_ProcessClient

	closeOnce sync.Once
	closed    chan struct{}
	recvDone  chan struct{}
}

// event is an answer from the processor, or the end of the stream (resp nil).
type event struct {
	resp *extprocv3.ProcessingResponse
	code codes.Code // when resp is nil: codes.OK for a clean close by the server
	msg  string
}

func (e *Envoy) openSession(md map[string]string) *session {
	e.stats.streamsStarted.Add(1)
	return e.startSession(md)
}

// startSession opens a stream without counting it in streams_started (an observer's
// streams are counted apart, Stats.ObserverStreams).
func (e *Envoy) startSession(md map[string]string) *session {
	// No deadline: ext_proc starts its stream without a timeout (ext_proc.cc
	// Filter::openStream), whatever grpc_service.timeout says.
	ctx, cancel := context.WithCancel(e.baseCtx)
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(md))
	}
	s := &session{
		e:        e,
		ctx:      ctx,
		cancel:   cancel,
		ops:      make(chan *extprocv3.ProcessingRequest, 8),
		events:   make(chan event, 8),
		closed:   make(chan struct{}),
		recvDone: make(chan struct{}),
	}
	e.goTracked(s.run)
	return s
}

// send queues a message. The filter has at most a couple outstanding, so the queue never
// fills; after close the message is dropped, as Envoy drops sends on a closed stream.
func (s *session) send(req *extprocv3.ProcessingRequest) {
	select {
	case s.ops <- req:
	case <-s.closed:
	}
}

func (s *session) run() {
	stream, err := s.e.client.Process(s.ctx)
	if err != nil {
		s.deliver(statusEvent(err))
		return
	}
	s.sendMu.Lock()
	s.stream = stream
	select {
	case <-s.closed:
		// Closed while connecting: the close found no stream to half-close.
		_ = stream.CloseSend()
	default:
	}
	s.sendMu.Unlock()
	s.e.goTracked(func() { s.recv(stream) })
	for {
		select {
		case <-s.closed:
			return
		case req := <-s.ops:
			s.sendMu.Lock()
			select {
			case <-s.closed:
				s.sendMu.Unlock()
				return
			default:
			}
			err := stream.Send(req)
			s.sendMu.Unlock()
			if err != nil {
				// io.EOF: the server ended the stream; recv reports how. Anything else was
				// raised by the client side and is the stream's status.
				if !errors.Is(err, io.EOF) {
					s.deliver(statusEvent(err))
				}
				return
			}
		}
	}
}

func (s *session) recv(stream extprocv3.ExternalProcessor_ProcessClient) {
	defer close(s.recvDone)
	for {
		resp, err := stream.Recv()
		if err != nil {
			s.deliver(statusEvent(err))
			return
		}
		s.deliver(event{resp: resp})
	}
}

func statusEvent(err error) event {
	if errors.Is(err, io.EOF) {
		return event{code: codes.OK}
	}
	st := status.Convert(err)
	return event{code: st.Code(), msg: st.Message()}
}

// deliver hands an event to the filter unless Envoy closed the stream, after which it no
// longer listens. (A stream that ended on its own, a deadline say, must still be reported:
// the filter always closes the session when it is done, which releases a blocked deliver.)
func (s *session) deliver(ev event) {
	select {
	case s.events <- ev:
	case <-s.closed:
	}
}

// close ends the stream from Envoy's side. It never blocks the request.
func (s *session) close(graceful bool) {
	s.closeOnce.Do(func() {
		close(s.closed)
		if !graceful {
			// Half-close, then reset at once. If a Send is still in progress the half-close
			// cannot be slipped in before it; Envoy's reset overtakes both anyway.
			if s.sendMu.TryLock() {
				if s.stream != nil {
					_ = s.stream.CloseSend()
				}
				s.sendMu.Unlock()
			}
			s.cancel()
			return
		}
		// Half-close after any Send in progress, and reset only if the server has not
		// finished within the remote close timeout.
		s.e.goTracked(func() {
			s.sendMu.Lock()
			if s.stream != nil {
				_ = s.stream.CloseSend()
			}
			s.sendMu.Unlock()
		})
		timeout := s.e.cfg.RemoteCloseTimeout
		s.e.goTracked(func() {
			t := time.NewTimer(timeout)
			defer t.Stop()
			select {
			case <-s.recvDone:
			case <-t.C:
			case <-s.ctx.Done():
			}
			s.cancel()
		})
	})
}
