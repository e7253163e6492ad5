package extproctest_test

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// New refuses what the stand-in cannot reproduce instead of silently doing something else.
func TestNewRefusesWhatItCannotReproduce(t *testing.T) {
	streamed := mode(extprocfilterv3.ProcessingMode_STREAMED)
	trailers := mode(extprocfilterv3.ProcessingMode_BUFFERED)
	trailers.RequestTrailerMode = extprocfilterv3.ProcessingMode_SEND
	tests := []struct {
		name string
		cfg  extproctest.Config
		want error
	}{
		{"no processor", extproctest.Config{Upstream: "127.0.0.1:1"}, extproctest.ErrConfig},
		{"no upstream", extproctest.Config{Processor: "127.0.0.1:1"}, extproctest.ErrConfig},
		{"STREAMED body", extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", ProcessingMode: streamed}, extproctest.ErrUnsupported},
		{"trailers sent", extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", ProcessingMode: trailers}, extproctest.ErrUnsupported},
		{"bad status_on_error", extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", StatusOnError: 42}, extproctest.ErrConfig},
		{"bad mutation regex", extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", MutationRules: &mutationrulesv3.HeaderMutationRules{
			AllowExpression: &matcherv3.RegexMatcher{Regex: "("},
		}}, extproctest.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := extproctest.New(tt.cfg)
			if err == nil {
				e.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("New: %v, want %v", err, tt.want)
			}
		})
	}
}

// The processor may listen on a unix socket, as a sidecar often does.
func TestProcessorOnUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	p := &fakeProcessor{handle: signer()}
	p.srv = grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(p.srv.Stop)

	up := startUpstream(t, nil)
	e, err := extproctest.New(extproctest.Config{Processor: "unix:" + sock, Upstream: up.addr(), MessageTimeout: guard})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	client := &http.Client{Timeout: guard, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(e.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.only(t).Header.Get("X-Signed") != "headers" {
		t.Errorf("status %d, upstream headers %v", resp.StatusCode, up.only(t).Header)
	}
}
