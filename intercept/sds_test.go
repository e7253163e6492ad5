package intercept

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	rpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

const osHost = "objectstorage.us-ashburn-1.oraclecloud.com"

func TestSDSSecretTypeURL(t *testing.T) {
	a, err := anypb.New(&tlsv3.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != SecretTypeURL {
		t.Fatalf("SecretTypeURL %q, the Secret proto's is %q", SecretTypeURL, a.GetTypeUrl())
	}
}

func TestSDSAllowedNameGetsOneLeaf(t *testing.T) {
	h := newHarness(t, nil)
	ss := h.subscribe(osHost, "")
	leaf, version := ss.expectLeaf()
	if !leaf.NotAfter.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("notAfter %v, want the TTL after now", leaf.NotAfter)
	}
	// Nothing more comes for the name: ending the request side ends the
	// stream, and any further response would arrive before the end.
	if err := ss.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if resp, err := ss.recv(); err != io.EOF {
		t.Fatalf("after the leaf (version %s): %v %v; want the stream's end", version, resp, err)
	}
	if n := h.events.count(EventMinted, ""); n != 1 {
		t.Errorf("%d mints for one name", n)
	}
	h.events.waitEvent(t, EventEvicted, osHost, ReasonUnsubscribed)
	if st := h.sds.Stats(); st.LiveNames != 0 {
		t.Errorf("%d live names after the only stream ended", st.LiveNames)
	}
}

func TestSDSSharesOneLeafPerName(t *testing.T) {
	h := newHarness(t, nil)
	_, v1 := h.subscribe(osHost, "").expectLeaf()
	// A name in mixed case is another subscription in Envoy (the sni mapper
	// passes SNI as sent) with its own name, but the same host.
	_, v2 := h.subscribe(osHost, "").expectLeaf()
	mixed := h.subscribe("ObjectStorage.US-Ashburn-1.oraclecloud.com", "")
	mixed.expectLeaf()
	if v1 != v2 {
		t.Errorf("two streams for one name got versions %s and %s: one leaf was minted per stream", v1, v2)
	}
	if n := h.events.count(EventMinted, ""); n != 2 {
		t.Errorf("%d mints, want one per distinct name", n)
	}
}

// TestSDSRefusedNamesAreRemoved: every name that gets no leaf is answered
// with removed_resources, which fails Envoy's handshake at once
// (SdsApi's remove callback → SecretManager::doRemoveCertificateConfig
// notifies the waiting handshakes with no context). The answers come while
// the test's clock stands still: nothing waits on time.
func TestSDSRefusedNamesAreRemoved(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct{ name, reason string }{
		{"www.example.com", ReasonPolicy},
		{"oraclecloud.com", ReasonPolicy},
		{"www.oraclecloud.com", ReasonPolicy},
		{osHost + ".evil.example", ReasonPolicy},
		{"svc.corp.example", ReasonPolicy}, // the CA permits it, the default policy does not
		{NoSNIName, ReasonPolicy},
		{"10.0.0.1", ReasonPolicy},
		{"*", ReasonInvalidName},
		{"", ReasonInvalidName},
		{"objectstorage.us-ashburn-1.oraclecloud.com\x00.evil", ReasonInvalidName},
		{strings.Repeat("a", 250) + ".oraclecloud.com", ReasonInvalidName},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.subscribe(c.name, "").expectRemoval()
			h.events.waitEvent(t, EventRefused, capName(c.name), c.reason)
		})
	}
	if n := h.events.count(EventMinted, ""); n != 0 {
		t.Errorf("%d leaves minted for refused names", n)
	}
}

func TestSDSPolicyCallback(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Allow = func(name string) error {
			if name == "svc.corp.example" {
				return nil
			}
			if name == osHost {
				return errors.New("not this one")
			}
			return LooksLikeOCIEndpoint(name)
		}
	})
	h.subscribe("svc.corp.example", "").expectLeaf()
	h.subscribe(osHost, "").expectRemoval()
	h.subscribe("identity.us-ashburn-1.oci.oraclecloud.com", "").expectLeaf()
	// Allowed by the callback, but outside the CA: no leaf all the same.
	h2 := newHarness(t, func(c *Config) { c.Allow = func(string) error { return nil } })
	h2.subscribe("www.example.com", "").expectRemoval()
}

func TestSDSRotatesBeforeExpiryOnOpenStreams(t *testing.T) {
	h := newHarness(t, nil) // a 3 s TTL: rotated 2 s in
	ss := h.subscribe(osHost, "")
	leaf, version := ss.expectLeaf()
	for range 5 {
		h.clock.Advance(2*time.Second + 100*time.Millisecond)
		next, v := ss.expectLeaf()
		if v == version || next.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			t.Fatalf("the rotation sent version %s again", v)
		}
		if !next.NotBefore.Before(leaf.NotAfter) {
			t.Fatalf("the new leaf (from %v) does not overlap the old one (to %v)", next.NotBefore, leaf.NotAfter)
		}
		leaf, version = next, v
	}
	// The clock jumps past the leaf's expiry (a suspended host, a stalled
	// loop): a stream that subscribes now is not sent the expired leaf,
	// only its replacement, and so is the open stream.
	h.clock.Advance(10 * time.Second)
	late := h.subscribe(osHost, "")
	late.expectLeaf()
	ss.expectLeaf()
	if n := h.events.count(EventRotated, ""); n != 6 {
		t.Errorf("%d rotations, want 6", n)
	}
}

func TestSDSEvictsUnsubscribedNames(t *testing.T) {
	h := newHarness(t, nil)
	// One stream with two names, as under ADS: unsubscribing one evicts it
	// and keeps the other.
	ss := h.subscribe(osHost, "")
	ss.expectLeaf()
	const other = "identity.us-ashburn-1.oci.oraclecloud.com"
	if err := ss.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNamesSubscribe: []string{other}}); err != nil {
		t.Fatal(err)
	}
	if resp := ss.mustRecv(); len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != other {
		t.Fatalf("second name: %v", resp)
	}
	if err := ss.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNamesUnsubscribe: []string{osHost}}); err != nil {
		t.Fatal(err)
	}
	h.events.waitEvent(t, EventEvicted, osHost, ReasonUnsubscribed)
	if st := h.sds.Stats(); st.LiveNames != 1 {
		t.Errorf("%d live names, want the one still subscribed", st.LiveNames)
	}
	// Its leaf is no longer rotated on the stream: the next rotation sends
	// only the name still subscribed.
	h.clock.Advance(2*time.Second + 100*time.Millisecond)
	if resp := ss.mustRecv(); len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != other {
		t.Fatalf("after the rotation: %v", resp)
	}
	ss.cancel()
	h.events.waitEvent(t, EventEvicted, other, ReasonUnsubscribed)
}

func TestSDSCapEvictsLeastRecentlySubscribed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxNames = 3 })
	names := []string{"a.us-ashburn-1.oraclecloud.com", "b.us-ashburn-1.oraclecloud.com", "c.us-ashburn-1.oraclecloud.com"}
	streams := map[string]*selectorStream{}
	for _, n := range names {
		streams[n] = h.subscribe(n, "")
		streams[n].expectLeaf()
	}
	// a is subscribed again (another listener, a reconnect): b is now the
	// least recently subscribed.
	h.subscribe(names[0], "").expectLeaf()
	h.subscribe("d.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	streams[names[1]].expectRemoval()
	h.events.waitEvent(t, EventEvicted, names[1], ReasonCapacity)
	if st := h.sds.Stats(); st.LiveNames != 3 {
		t.Errorf("%d live names, cap 3", st.LiveNames)
	}
}

func TestSDSRateLimitRefusesWithRemoval(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MintsPerSecond, c.MintBurst = 1, 2 })
	h.subscribe("a.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	h.subscribe("b.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	h.subscribe("c.us-ashburn-1.oraclecloud.com", "").expectRemoval()
	h.events.waitEvent(t, EventRefused, "c.us-ashburn-1.oraclecloud.com", ReasonRateLimited)
	// A name Envoy already holds a leaf for, on a stream opened again, is
	// not new: refusing it would take a working certificate away.
	h.subscribe("d.us-ashburn-1.oraclecloud.com", "v-held").expectLeaf()
	// A live name costs no mint.
	h.subscribe("a.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	h.clock.Advance(time.Second)
	h.subscribe("c.us-ashburn-1.oraclecloud.com", "").expectLeaf()
}

func TestSDSNACKEvictsAndRemoves(t *testing.T) {
	h := newHarness(t, nil)
	ss := h.subscribe(osHost, "")
	resp := ss.mustRecv()
	err := ss.stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl: SecretTypeURL, ResponseNonce: resp.GetNonce(),
		ErrorDetail: rpcstatus.New(codes.Internal, "Failed to load certificate chain").Proto(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ss.expectRemoval()
	h.events.waitEvent(t, EventNACK, osHost, "")
	h.events.waitEvent(t, EventEvicted, osHost, ReasonNACK)
	if !strings.Contains(h.log.String(), "Failed to load certificate chain") {
		t.Error("the NACK's message is not in the log")
	}
}

func TestSDSStreamsCapped(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxStreams = 2 })
	h.subscribe("a.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	h.subscribe("b.us-ashburn-1.oraclecloud.com", "").expectLeaf()
	h.subscribe("c.us-ashburn-1.oraclecloud.com", "").expectRemoval()
	h.events.waitEvent(t, EventRefused, "c.us-ashburn-1.oraclecloud.com", ReasonOverloaded)
	if st := h.sds.Stats(); st.Streams != 2 {
		t.Errorf("%d streams counted, cap 2", st.Streams)
	}
}

func TestSDSRefusesStateOfTheWorld(t *testing.T) {
	h := newHarness(t, nil)
	s, err := h.client.StreamSecrets(context.Background())
	if err == nil {
		_ = s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: []string{osHost}})
		_, err = s.Recv()
	}
	if st := statusOf(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "DELTA_GRPC") {
		t.Errorf("StreamSecrets: %v; want UNIMPLEMENTED naming DELTA_GRPC", err)
	}
	_, err = h.client.FetchSecrets(context.Background(), &discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: []string{osHost}})
	if st := statusOf(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "DELTA_GRPC") {
		t.Errorf("FetchSecrets: %v; want UNIMPLEMENTED naming DELTA_GRPC", err)
	}
}

func TestSDSRejectsWhatItDoesNotServe(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		name string
		req  *discoveryv3.DeltaDiscoveryRequest
	}{
		{"another type", &discoveryv3.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", ResourceNamesSubscribe: []string{osHost}}},
		{"a wildcard subscription", &discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := h.client.DeltaSecrets(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Send(c.req)
			_, err = s.Recv()
			if st := statusOf(err); st.Code() != codes.InvalidArgument {
				t.Fatalf("%v; want INVALID_ARGUMENT", err)
			}
		})
	}
}

func TestSDSSilentStreamEnds(t *testing.T) {
	h := newHarness(t, nil)
	s, err := h.client.DeltaSecrets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Recv(); done <- err }()
	// The server arms its timer on the clock once the stream is open;
	// moving the clock on until the stream ends shows the timer ends it.
	for {
		h.clock.Advance(DefaultFirstRequestTimeout)
		select {
		case err := <-done:
			if st := statusOf(err); st.Code() != codes.DeadlineExceeded {
				t.Fatalf("%v; want DEADLINE_EXCEEDED", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestSDSCloseEndsStreams(t *testing.T) {
	h := newHarness(t, nil)
	ss := h.subscribe(osHost, "")
	ss.expectLeaf()
	h.sds.Close()
	if _, err := ss.recv(); statusOf(err).Code() != codes.Unavailable {
		t.Fatalf("%v; want UNAVAILABLE, on which Envoy reconnects", err)
	}
}

// stalledClock moves only when told and never fires a timer: a rotation
// loop on it is as stuck as one on a suspended host.
type stalledClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stalledClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stalledClock) Until(time.Time) <-chan time.Time { return nil }

func (c *stalledClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestSDSNeverServesAnExpiredLeaf: with the rotation loop's timer stuck
// and the clock past a leaf's expiry, a stream that subscribes is not sent
// the live entry's expired leaf: the stream holds it back and wakes the
// loop, and is sent the replacement; so is the stream that held the old
// one.
func TestSDSNeverServesAnExpiredLeaf(t *testing.T) {
	clk := &stalledClock{now: t0}
	h := newHarness(t, func(c *Config) { c.Clock = clk })
	h.clock = credentialstest.NewClock(t0) // checkLeaf reads the time from here
	ss := h.subscribe(osHost, "")
	ss.expectLeaf()
	clk.advance(time.Minute)
	h.clock.Set(clk.Now())
	h.subscribe(osHost, "").expectLeaf()
	ss.expectLeaf()
}
