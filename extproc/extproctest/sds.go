package extproctest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// This file is the on-demand selector's secret side, as Envoy 1.37 to 1.40 have it
// (source/extensions/transport_sockets/tls/cert_selectors/on_demand/config.cc,
// SecretManager): a cache of secret names, each with its own SDS subscription, the
// certificate it last got, and the handshakes waiting for it.
//
//   - A name is subscribed the first time a handshake asks for it (addCertificateConfig)
//     and stays subscribed, with or without a certificate and with or without handshakes
//     waiting, until the server removes it. Nothing expires it: not notAfter, not
//     idleness, not a count (max_secrets and cache_idle_timeout came after 1.40).
//   - Each subscription is its own delta xDS stream: every SdsApi gets a subscription from
//     SubscriptionFactoryImpl, and a DELTA_GRPC api_config_source builds a new gRPC mux for
//     each (subscription_factory_impl.cc).
//   - An update replaces the certificate for later handshakes and resumes the waiting
//     ones (updateCertificate); a removal fails the waiting ones and drops the name and
//     its subscription (doRemoveCertificateConfig), so the next handshake subscribes anew.
//   - While the stream is down the last certificate is kept and served: xDS keeps the
//     last config, and the stream is retried (GrpcStream); a name never answered keeps
//     its handshakes waiting.

// secretTypeURL is the delta SDS type URL (deltaGrpcMethod for Secret).
const secretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// errSecretRemoved is the selector's failed selection: the SDS server removed the name.
var errSecretRemoved = errors.New("extproctest: the SDS server removed the secret")

// sdsRetryMin and sdsRetryMax bound the stand-in's wait before reopening a failed SDS
// stream. Envoy backs off exponentially too; the exact values are not reproduced and no
// behaviour of the stand-in depends on them.
const (
	sdsRetryMin = 100 * time.Millisecond
	sdsRetryMax = 5 * time.Second
)

type secretManager struct {
	e      *Envoy
	conn   *grpc.ClientConn
	client secretv3.SecretDiscoveryServiceClient

	mu      sync.Mutex
	entries map[string]*secretEntry
}

// secretEntry is SecretManager::CacheEntry.
type secretEntry struct {
	name    string
	cert    *tls.Certificate // cert_context_: what later handshakes get at once
	version string
	waiters map[chan *tls.Certificate]struct{} // callbacks_: nil is a failed selection
	stop    context.CancelFunc                 // ends the subscription
}

func newSecretManager(e *Envoy, conn *grpc.ClientConn) *secretManager {
	return &secretManager{
		e:       e,
		conn:    conn,
		client:  secretv3.NewSecretDiscoveryServiceClient(conn),
		entries: map[string]*secretEntry{},
	}
}

// fetch is BaseAsyncSelector::doSelectTlsContext: a name with a certificate is served at
// once; otherwise the handshake waits (SelectionStatus::Pending) for the name's update or
// removal, subscribing to the name if nobody did yet (fetchCertificate,
// addCertificateConfig). A handshake that gives up (ctx) leaves the subscription in place.
// Only call it from a goroutine Close waits for.
func (m *secretManager) fetch(ctx context.Context, name string) (*tls.Certificate, error) {
	m.mu.Lock()
	ent := m.entries[name]
	if ent != nil && ent.cert != nil {
		cert := ent.cert
		m.mu.Unlock()
		return cert, nil
	}
	if ent == nil {
		ent = m.subscribe(name)
	}
	ch := make(chan *tls.Certificate, 1)
	ent.waiters[ch] = struct{}{}
	m.mu.Unlock()
	select {
	case cert := <-ch:
		if cert == nil {
			return nil, errSecretRemoved
		}
		return cert, nil
	case <-ctx.Done():
		m.mu.Lock()
		delete(ent.waiters, ch)
		m.mu.Unlock()
		return nil, ctx.Err()
	}
}

// subscribe starts a name's subscription (on_demand_secret.cert_requested). m.mu is held.
func (m *secretManager) subscribe(name string) *secretEntry {
	ctx, stop := context.WithCancel(m.e.baseCtx)
	ent := &secretEntry{name: name, waiters: map[chan *tls.Certificate]struct{}{}, stop: stop}
	m.entries[name] = ent
	m.e.stats.certRequested.Add(1)
	m.e.goTracked(func() { m.run(ctx, ent) })
	return ent
}

// run keeps the name's stream open, reopening it after a failure, until the name is
// removed or the stand-in closes.
func (m *secretManager) run(ctx context.Context, ent *secretEntry) {
	wait := sdsRetryMin
	for ctx.Err() == nil {
		if m.stream(ctx, ent) {
			wait = sdsRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, sdsRetryMax)
	}
}

// stream is one DeltaSecrets stream for the name. It reports whether the server answered.
func (m *secretManager) stream(ctx context.Context, ent *secretEntry) (answered bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := m.client.DeltaSecrets(sctx)
	if err != nil {
		return false
	}
	m.e.stats.sdsStreams.Add(1)
	req := &discoveryv3.DeltaDiscoveryRequest{
		Node:                   &corev3.Node{Id: "extproctest", Cluster: "extproctest"},
		TypeUrl:                secretTypeURL,
		ResourceNamesSubscribe: []string{ent.name},
	}
	m.mu.Lock()
	if ent.version != "" {
		// A new stream tells the server what Envoy already has (NewGrpcMuxImpl, delta
		// initial_resource_versions), so it need not send it again.
		req.InitialResourceVersions = map[string]string{ent.name: ent.version}
	}
	m.mu.Unlock()
	if err := st.Send(req); err != nil {
		return false
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return answered
		}
		answered = true
		ack, removed := m.apply(ent, resp)
		if removed {
			return answered // the subscription is stopped with the name
		}
		if err := st.Send(ack); err != nil {
			return answered
		}
	}
}

// apply takes one delta response for the name and returns the ACK (or NACK) to send, or
// removed when the server removed the name.
func (m *secretManager) apply(ent *secretEntry, resp *discoveryv3.DeltaDiscoveryResponse) (*discoveryv3.DeltaDiscoveryRequest, bool) {
	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: secretTypeURL, ResponseNonce: resp.GetNonce()}
	for _, name := range resp.GetRemovedResources() {
		if name == ent.name {
			m.remove(ent)
			return nil, true
		}
	}
	for _, res := range resp.GetResources() {
		if res.GetName() != ent.name {
			continue
		}
		cert, err := decodeSecret(res)
		if err != nil {
			// A bad secret is rejected (NACK); Envoy keeps what it had and the
			// handshakes keep waiting.
			m.e.logf("extproctest: SDS secret %q rejected: %v", ent.name, err)
			ack.ErrorDetail = grpcstatus.New(codes.InvalidArgument, err.Error()).Proto()
			return ack, false
		}
		m.update(ent, cert, res.GetVersion())
	}
	return ack, false
}

// update is SecretManager::updateCertificate.
func (m *secretManager) update(ent *secretEntry, cert *tls.Certificate, version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ent.cert, ent.version = cert, version
	for ch := range ent.waiters {
		ch <- cert
	}
	clear(ent.waiters)
}

// remove is SecretManager::doRemoveCertificateConfig.
func (m *secretManager) remove(ent *secretEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range ent.waiters {
		ch <- nil
	}
	clear(ent.waiters)
	if m.entries[ent.name] == ent {
		delete(m.entries, ent.name)
	}
	ent.stop()
}

// decodeSecret is the Secret's tls_certificate as Ssl::TlsCertificateConfigImpl reads it:
// a PEM chain and key from inline bytes, an inline string or a file.
func decodeSecret(res *discoveryv3.Resource) (*tls.Certificate, error) {
	var sec tlsv3.Secret
	if err := res.GetResource().UnmarshalTo(&sec); err != nil {
		return nil, fmt.Errorf("not a Secret: %w", err)
	}
	tc := sec.GetTlsCertificate()
	if tc == nil {
		return nil, errors.New("the Secret has no tls_certificate")
	}
	chain, err := dataSource(tc.GetCertificateChain())
	if err != nil {
		return nil, fmt.Errorf("certificate_chain: %w", err)
	}
	key, err := dataSource(tc.GetPrivateKey())
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

func dataSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_Filename:
		return os.ReadFile(s.Filename)
	}
	return nil, errors.New("no inline_bytes, inline_string or filename")
}
