package extproctest_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// A streamed answer (text/event-stream, as OCI Generative AI sends with "stream": true)
// reaches the client event by event: the upstream writes the next event only once the
// client has read the previous one, so anything that held the response back would hang.
// With no route timeout ("timeout: 0s") nothing cuts the stream.
func TestEventStreamReachesTheClientEventByEvent(t *testing.T) {
	const events = 5
	read := make(chan int)
	h := newHarness(t, signer(), func(c *extproctest.Config) { c.RouteTimeout = -1 })
	h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := range events {
			fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-read:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	resp, err := h.client.Do(h.newRequest(t, http.MethodPost, "/20231130/actions/chat", strings.NewReader(`{"stream":true}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("got %d %q", resp.StatusCode, ct)
	}
	br := bufio.NewReader(resp.Body)
	for i := range events {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: {\"n\":%d}\n", i) {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		read <- i
	}
	if rest, _ := io.ReadAll(br); string(rest) != "data: [DONE]\n\n" {
		t.Errorf("end of stream %q", rest)
	}
}

// A route timeout covers the whole response, not just its headers: a stream still running
// when it expires is cut off mid-body (the headers are out, so no 504 can be sent). This is
// why ocisigner's envoy.yaml sets "timeout: 0s" on its routes.
func TestRouteTimeoutCutsAStreamThatIsStillRunning(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	h := newHarness(t, signer(), func(c *extproctest.Config) { c.RouteTimeout = 100 * time.Millisecond })
	h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "data: 0\n\n")
		w.(http.Flusher).Flush()
		select { // a model that stopped sending
		case <-done:
		case <-r.Context().Done():
		}
	})
	resp, err := h.client.Do(h.newRequest(t, http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil || string(body) != "data: 0\n\n" {
		t.Fatalf("read %q, %v; want the first event and then a broken stream", body, err)
	}
	if d := h.logs.last(t).ResponseCodeDetails; d != "upstream_response_timeout" {
		t.Errorf("details %q", d)
	}
}
