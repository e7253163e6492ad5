package intercept

import (
	"container/list"
	"errors"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/signer"
)

// entry is a live name: the leaf every stream subscribed to it is served.
type entry struct {
	name       string // as Envoy asked for it: the resource name
	host       string // lower-cased: the leaf's SAN
	leaf       *leaf  // nil until the first is minted
	subs       map[*stream]struct{}
	elem       *list.Element
	refreshing bool
}

// leaf is one minted certificate and key, marshalled once for every
// stream that is sent it.
type leaf struct {
	version   string
	notAfter  time.Time
	refreshAt time.Time // two thirds into its TTL
	resource  *anypb.Any
}

// newLeaf wraps a minted chain and key in the Secret Envoy's selector
// loads: a tls_certificate with both inline (secret.proto; the
// integration test's makeSecret uses the same fields with filenames), named
// exactly as subscribed, since SdsApi refuses a secret of another name.
func newLeaf(version, name string, chain, key []byte, notAfter time.Time, ttl time.Duration) (*leaf, error) {
	secret := &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
	res, err := anypb.New(secret)
	clear(key)
	if err != nil {
		return nil, err
	}
	return &leaf{version: version, notAfter: notAfter, refreshAt: notAfter.Add(-ttl / 3), resource: res}, nil
}

// admit checks a subscribed name before anything is spent on it, and
// returns the host a leaf would be for.
func (s *SDS) admit(name string) (host, reason string, err error) {
	host = strings.ToLower(name)
	if len(name) > 253 || !signer.ValidHostName(host) {
		return "", ReasonInvalidName, errors.New("not a DNS host name")
	}
	if err := s.cfg.Allow(host); err != nil {
		return "", ReasonPolicy, err
	}
	if err := s.cfg.CA.checkName(host); err != nil {
		return "", ReasonPolicy, err
	}
	return host, "", nil
}

// subscribe answers a name a stream subscribed to: the live leaf, a new
// one, or a refusal. It runs on the stream's goroutine.
func (s *SDS) subscribe(st *stream, name string, resumed bool) {
	if st.overloaded {
		s.refuse(st, name, ReasonOverloaded, errors.New("over MaxStreams"))
		return
	}
	host, reason, err := s.admit(name)
	if err != nil {
		s.refuse(st, name, reason, err)
		return
	}
	delete(st.sent, name) // a subscription asks for the resource again
	now := s.clock.Now()
	s.mu.Lock()
	if e := s.live[name]; e != nil {
		s.attachLocked(st, e)
		s.mu.Unlock()
		return
	}
	if !resumed && !s.bucket.take(now) {
		s.mu.Unlock()
		s.refuse(st, name, ReasonRateLimited, errors.New("over the mint rate"))
		return
	}
	for len(s.live) >= s.cfg.MaxNames {
		s.evictLocked(s.lru.Back().Value.(*entry), ReasonCapacity)
	}
	e := &entry{name: name, host: host, subs: map[*stream]struct{}{}}
	e.elem = s.lru.PushFront(e)
	s.live[name] = e
	s.attachLocked(st, e)
	s.mu.Unlock()
	s.mint(e, now, EventMinted)
}

// attachLocked subscribes st to e and marks e recently used.
func (s *SDS) attachLocked(st *stream, e *entry) {
	e.subs[st] = struct{}{}
	st.names[e.name] = e
	delete(st.removals, e.name)
	s.lru.MoveToFront(e.elem)
	if e.leaf != nil {
		st.dirty[e.name] = struct{}{}
	}
}

// refuse queues removed_resources for name on st.
func (s *SDS) refuse(st *stream, name, reason string, err error) {
	s.log.Debug("intercept: no certificate", "name", capName(name), "reason", reason, "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := st.names[name]; e != nil {
		delete(e.subs, st)
		delete(st.names, name)
		if len(e.subs) == 0 {
			s.evictLocked(e, ReasonUnsubscribed)
		}
	}
	delete(st.dirty, name)
	st.removals[name] = struct{}{}
	s.observeLocked(EventRefused, name, reason)
}

// mint gives e a new leaf and tells its streams, or evicts it when no leaf
// can be had. It runs without s.mu: minting is the slow part.
func (s *SDS) mint(e *entry, now time.Time, kind EventKind) {
	var l *leaf
	chain, key, notAfter, err := s.cfg.CA.Issue(e.host, now, s.cfg.LeafTTL)
	if err == nil {
		l, err = newLeaf(s.version+"."+strconv.FormatUint(s.minted.Add(1), 36), e.name, chain, key, notAfter, s.cfg.LeafTTL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live[e.name] != e {
		return // evicted meanwhile; its streams were told
	}
	e.refreshing = false
	if err != nil {
		s.log.Error("intercept: cannot mint a certificate", "name", e.name, "err", err)
		s.evictLocked(e, ReasonMintFailed)
		return
	}
	e.leaf = l
	for st := range e.subs {
		st.dirty[e.name] = struct{}{}
		st.poke()
	}
	s.observeLocked(kind, e.name, "")
	s.kick()
}

// evictLocked drops a live name and queues removed_resources for every
// stream subscribed to it. In Envoy the removal erases the selector's
// entry (SecretManager::doRemoveCertificateConfig, via the provider's
// remove callback), which ends that name's subscription and stream.
func (s *SDS) evictLocked(e *entry, reason string) {
	delete(s.live, e.name)
	s.lru.Remove(e.elem)
	for st := range e.subs {
		delete(st.names, e.name)
		delete(st.dirty, e.name)
		st.removals[e.name] = struct{}{}
		st.poke()
	}
	s.log.Debug("intercept: certificate evicted", "name", e.name, "reason", reason)
	s.observeLocked(EventEvicted, e.name, reason)
}

// kick wakes the rotation loop to look at the leaves again.
func (s *SDS) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// rotateLoop replaces each leaf two thirds into its TTL. Envoy never
// fetches a certificate again by itself: the selector loads whatever SDS
// sent last and keeps it until the next update or removal
// (cert_selectors/on_demand/config.cc: AsyncContextConfig::loadCert and
// SecretManager::updateCertificate track no expiry), so a leaf not
// replaced here would be served expired.
func (s *SDS) rotateLoop() {
	defer s.swept.Done()
	for {
		next, due := s.dueLeaves(s.clock.Now())
		for _, e := range due {
			s.rotate(e)
		}
		if len(due) > 0 {
			continue
		}
		var at <-chan time.Time
		if !next.IsZero() {
			at = s.clock.Until(next)
		}
		select {
		case <-at:
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// dueLeaves marks and returns the entries whose leaf is due for rotation,
// and the earliest time another one will be.
func (s *SDS) dueLeaves(now time.Time) (next time.Time, due []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.live {
		switch {
		case e.leaf == nil || e.refreshing:
		case !now.Before(e.leaf.refreshAt):
			e.refreshing = true
			due = append(due, e)
		case next.IsZero() || e.leaf.refreshAt.Before(next):
			next = e.leaf.refreshAt
		}
	}
	return next, due
}

// rotate mints a leaf to replace e's, asking the policy again: a name it
// no longer allows is removed rather than served on.
func (s *SDS) rotate(e *entry) {
	if _, reason, err := s.admit(e.name); err != nil {
		s.mu.Lock()
		if s.live[e.name] == e {
			s.evictLocked(e, reason)
		}
		s.mu.Unlock()
		return
	}
	s.mint(e, s.clock.Now(), EventRotated)
}
