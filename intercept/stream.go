package intercept

import (
	"errors"
	"io"
	"slices"
	"strconv"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// How the delta protocol is served, as Envoy's client speaks it
// (source/extensions/config_subscription/grpc/delta_subscription_state.cc):
//
//   - The on-demand selector subscribes to each name on a stream of its own
//     (AsyncContextConfig asks the secret manager for one SDS provider per
//     name; the selector's integration test expects exactly one name in
//     each new stream's first request). Several names on one stream (ADS)
//     are served too.
//   - Every response carries one name, added or removed, never both: Envoy
//     NACKs a name twice in a response (handleGoodResponse: "duplicate
//     name"), and SdsApi treats an update with a removal as a removal.
//   - Envoy answers every response with its nonce (handleResponse): an ACK,
//     or a NACK when error_detail is set (handleBadResponse). A NACKed leaf
//     is not retried: its name is evicted and removed, so that handshakes
//     fail rather than wait.
//   - A removal is final for the subscription: the selector erases its
//     entry (SecretManager::doRemoveCertificateConfig) and fails the
//     paused handshakes, and its integration test's server then ends the
//     stream with OK (removeSecret). So does this server, once a stream it
//     sent a removal on has no name left.
//   - Each resource carries a ttl of the leaf's remaining life: Envoy
//     removes a resource whose ttl passes without an update
//     (DeltaSubscriptionState's ttl_ callback, set in
//     addResourceStateFromServer), so a leaf cannot outlive its notAfter in
//     Envoy even while this server is down.

// stream is one DeltaSecrets stream. names, dirty and removals are guarded
// by SDS.mu (other streams and the rotation loop change them); the rest
// belong to the stream's goroutine.
type stream struct {
	notify     chan struct{}
	overloaded bool

	names    map[string]*entry   // subscribed and live
	dirty    map[string]struct{} // names whose leaf was not sent yet
	removals map[string]struct{} // names to send removed_resources for

	started   bool
	removed   bool              // a removal was sent
	sent      map[string]string // name → version sent
	nonce     uint64
	nonceName map[string]string // outstanding nonce → its name
	lastNonce map[string]string // name → its latest nonce
}

func newStream() *stream {
	return &stream{
		notify: make(chan struct{}, 1),
		names:  map[string]*entry{}, dirty: map[string]struct{}{}, removals: map[string]struct{}{},
		sent: map[string]string{}, nonceName: map[string]string{}, lastNonce: map[string]string{},
	}
}

// poke wakes the stream's goroutine to send what changed.
func (st *stream) poke() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

type deltaServer = grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]

// DeltaSecrets serves one delta SDS stream.
func (s *SDS) DeltaSecrets(srv deltaServer) error {
	st := newStream()
	s.mu.Lock()
	if s.streams >= s.cfg.MaxStreams {
		st.overloaded = true
	} else {
		s.streams++
	}
	s.mu.Unlock()
	defer s.closeStream(st)
	ctx := srv.Context()
	reqs, recvErr := make(chan *discoveryv3.DeltaDiscoveryRequest), make(chan error, 1)
	go func() {
		for {
			req, err := srv.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	first := s.clock.Until(s.clock.Now().Add(s.cfg.FirstRequestTimeout))
	for {
		select {
		case req := <-reqs:
			first = nil
			if err := s.handle(st, req); err != nil {
				return err
			}
		case <-st.notify:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-first:
			return status.Errorf(codes.DeadlineExceeded, "no DeltaDiscoveryRequest within %s of opening the stream", s.cfg.FirstRequestTimeout)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return status.Error(codes.Unavailable, "ocisigner's SDS is shutting down")
		}
		if end, err := s.flush(st, srv); end || err != nil {
			return err
		}
	}
}

// closeStream drops the stream's subscriptions: a name no stream holds any
// more is evicted.
func (s *SDS) closeStream(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, e := range st.names {
		delete(e.subs, st)
		delete(st.names, name)
		if len(e.subs) == 0 {
			s.evictLocked(e, ReasonUnsubscribed)
		}
	}
	if !st.overloaded {
		s.streams--
	}
}

// handle applies one request: its ACK or NACK, then its unsubscriptions
// and subscriptions.
func (s *SDS) handle(st *stream, req *discoveryv3.DeltaDiscoveryRequest) error {
	if req.GetTypeUrl() != SecretTypeURL {
		return status.Errorf(codes.InvalidArgument, "ocisigner's SDS serves %s only, not %q", SecretTypeURL, capName(req.GetTypeUrl()))
	}
	if n := req.GetResponseNonce(); n != "" {
		s.ack(st, n, req.GetErrorDetail() != nil, req.GetErrorDetail().GetMessage())
	}
	if !st.started {
		st.started = true
		// A first request naming nothing is a wildcard subscription
		// (DeltaSubscriptionState::isInitialRequestForLegacyWildcard).
		if len(req.GetResourceNamesSubscribe()) == 0 && len(req.GetInitialResourceVersions()) == 0 {
			return status.Error(codes.InvalidArgument, "ocisigner's SDS serves certificates by name; a wildcard subscription is not served")
		}
	}
	if len(req.GetResourceNamesSubscribe()) > s.cfg.MaxNames {
		return status.Errorf(codes.InvalidArgument, "a request subscribes to %d names; at most %d are served", len(req.GetResourceNamesSubscribe()), s.cfg.MaxNames)
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		s.unsubscribe(st, name)
	}
	for _, name := range req.GetResourceNamesSubscribe() {
		_, resumed := req.GetInitialResourceVersions()[name]
		s.subscribe(st, name, resumed)
	}
	return nil
}

// ack settles a response's nonce. A NACK of a leaf evicts its name: the
// same leaf would be rejected again, and a removal fails the handshakes
// waiting for it at once.
func (s *SDS) ack(st *stream, nonce string, nacked bool, message string) {
	name, ok := st.nonceName[nonce]
	if !ok {
		return // superseded by a later response for the name, or unknown
	}
	delete(st.nonceName, nonce)
	delete(st.lastNonce, name)
	if !nacked {
		return
	}
	s.log.Warn("intercept: Envoy rejected a certificate", "name", name, "error", capName(message))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observeLocked(EventNACK, name, "")
	if e := st.names[name]; e != nil {
		s.evictLocked(e, ReasonNACK)
	}
}

func (s *SDS) unsubscribe(st *stream, name string) {
	s.mu.Lock()
	if e := st.names[name]; e != nil {
		delete(e.subs, st)
		delete(st.names, name)
		if len(e.subs) == 0 {
			s.evictLocked(e, ReasonUnsubscribed)
		}
	}
	delete(st.dirty, name)
	delete(st.removals, name)
	s.mu.Unlock()
	delete(st.sent, name)
}

// flush sends what changed for the stream: removals, then leaves not sent
// yet. A leaf due for rotation is held back (and the rotation loop woken):
// it is never sent in the last third of its life. It reports end once the
// stream has sent a removal and holds no name any more.
func (s *SDS) flush(st *stream, srv deltaServer) (end bool, err error) {
	now := s.clock.Now()
	type update struct {
		name string
		leaf *leaf
	}
	var updates []update
	stale := false
	s.mu.Lock()
	removals := make([]string, 0, len(st.removals))
	for name := range st.removals {
		removals = append(removals, name)
	}
	clear(st.removals)
	for name := range st.dirty {
		e := st.names[name]
		delete(st.dirty, name)
		switch {
		case e == nil || e.leaf == nil:
		case !now.Before(e.leaf.refreshAt):
			stale = true // the rotation marks it dirty again
		default:
			updates = append(updates, update{name, e.leaf})
		}
	}
	empty := len(st.names) == 0
	s.mu.Unlock()
	if stale {
		s.kick()
	}
	slices.Sort(removals)
	for _, name := range removals {
		delete(st.sent, name)
		if err := s.send(st, srv, name, &discoveryv3.DeltaDiscoveryResponse{RemovedResources: []string{name}}); err != nil {
			return true, err
		}
		st.removed = true
	}
	for _, u := range updates {
		if st.sent[u.name] == u.leaf.version {
			continue
		}
		res := &discoveryv3.Resource{Name: u.name, Version: u.leaf.version, Resource: u.leaf.resource, Ttl: durationpb.New(u.leaf.notAfter.Sub(now))}
		if err := s.send(st, srv, u.name, &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{res}}); err != nil {
			return true, err
		}
		st.sent[u.name] = u.leaf.version
	}
	return st.removed && empty, nil
}

// send stamps a response with the type and a fresh nonce, and remembers
// which name the nonce answers.
func (s *SDS) send(st *stream, srv deltaServer, name string, resp *discoveryv3.DeltaDiscoveryResponse) error {
	st.nonce++
	resp.TypeUrl = SecretTypeURL
	resp.Nonce = strconv.FormatUint(st.nonce, 10)
	if old, ok := st.lastNonce[name]; ok {
		delete(st.nonceName, old)
	}
	st.nonceName[resp.Nonce] = name
	st.lastNonce[name] = resp.Nonce
	return srv.Send(resp)
}
