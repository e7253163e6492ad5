package extproctest_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// Many requests at once share the processor connection and each get their own stream; once
// everything is closed no goroutine is left behind.
func TestConcurrentRequestsDoNotLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()

	proc := startProcessor(t, signer())
	up := startUpstream(t, nil)
	e, err := extproctest.New(extproctest.Config{
		Processor:      proc.addr,
		Upstream:       up.addr(),
		MessageTimeout: guard,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: guard, Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: concurrentRequests,
	}}

	var wg sync.WaitGroup
	errs := make(chan error, concurrentRequests)
	for i := 0; i < concurrentRequests; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var req *http.Request
			if i%2 == 0 {
				req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/get/%d", e.URL(), i), nil)
			} else {
				req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/post/%d", e.URL(), i), strings.NewReader(strings.Repeat("b", 1024)))
			}
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "upstream ok" {
				errs <- fmt.Errorf("request %d: %d %q", i, resp.StatusCode, body)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, r := range up.requests() {
		if r.Header.Get("X-Signed") != "headers" {
			t.Errorf("%s reached the upstream unsigned", r.RequestURI)
		}
	}
	st := e.Stats()
	if st.StreamsStarted != concurrentRequests || st.UpstreamRequests != concurrentRequests {
		t.Errorf("streams %d upstream requests %d, want %d", st.StreamsStarted, st.UpstreamRequests, concurrentRequests)
	}

	client.CloseIdleConnections()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	proc.srv.Stop()
	up.srv.Close()

	deadline := time.Now().Add(guard)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
