package extproc_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
)

// pingIdle opens an HTTP/2 connection with no stream, as Envoy keeps to its
// gRPC cluster, and sends pings apart by gap. It reports whether the server
// answered every ping without a GOAWAY.
func pingIdle(t *testing.T, opts []grpc.ServerOption, pings int, gap time.Duration) error {
	t.Helper()
	g := grpc.NewServer(opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range pings {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			return err
		}
		for acked := false; !acked; {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				return errors.New("GOAWAY " + f.ErrCode.String() + ": " + string(f.DebugData()))
			case *http2.PingFrame:
				acked = f.IsAck()
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			}
		}
	}
	// A GOAWAY follows the ack of the ping that earned it.
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return errors.New("GOAWAY " + g.ErrCode.String() + ": " + string(g.DebugData()))
		}
	}
}

// Envoy pings its idle connections to the signer (connection_keepalive).
// grpc-go's default policy counts a ping with no stream open as abuse and
// answers the third with GOAWAY too_many_pings; the service's accepts idle
// pings as often as its minimum interval, and refuses faster ones. The
// minimum is scaled down here so that the test takes a second;
// deploy/envoy_test.go checks that envoy.yaml's interval is no shorter than
// the production DefaultMinPingInterval.
func TestKeepaliveAcceptsEnvoyPings(t *testing.T) {
	t.Parallel()
	if err := pingIdle(t, nil, 4, 10*time.Millisecond); err == nil {
		t.Fatal("grpc-go's default policy should refuse idle pings; the check below would prove nothing")
	}
	const minimum = 200 * time.Millisecond
	srv, err := extproc.New(extproc.Config{Credentials: staticCredentials{signer.StaticSource{}}, MinPingInterval: minimum})
	if err != nil {
		t.Fatal(err)
	}
	// Four pings (three strikes would earn a GOAWAY) a little over the
	// minimum apart, with no stream open, as Envoy sends them: accepted.
	if err := pingIdle(t, srv.ServerOptions(), 4, minimum+50*time.Millisecond); err != nil {
		t.Fatalf("service refused Envoy's keepalive pings: %v", err)
	}
	// Faster than the minimum: refused, so the minimum is what decides.
	if err := pingIdle(t, srv.ServerOptions(), 4, minimum/8); err == nil {
		t.Fatal("pings faster than the minimum were accepted: the policy above proves nothing")
	}
}
