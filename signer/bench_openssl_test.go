//go:build cgo && linux

package signer_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ocisigner/ocisigner/internal/opensslref"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// processCPU is the CPU time the process has used, all threads (the GC's
// included): CLOCK_PROCESS_CPUTIME_ID, which unlike getrusage counts the
// running threads' time up to the call.
func processCPU(b *testing.B) time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 2 /* CLOCK_PROCESS_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		b.Fatal(errno)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkSignVsOpenSSL measures signer.Sign with each backend against
// OpenSSL's bare sign of the same signing string (internal/opensslref: the
// digest and the RSA signature in a C loop, nothing else), in alternating
// chunks in the same process, by the process's CPU time. x-openssl is
// Sign's CPU over the bare sign's; the target for a GET with the OpenSSL
// backend is 1.10.
//
//	go test ./signer -run '^$' -bench SignVsOpenSSL -benchtime 2000x
func BenchmarkSignVsOpenSSL(b *testing.B) {
	key := signertest.Key(b, 1)
	creds := &signer.Credentials{KeyID: "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/" + signer.Fingerprint(&key.PublicKey), Key: key}
	ref, err := opensslref.New(key)
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Close()
	target := "/20160918/instances?compartmentId=ocid1.compartment.oc1..x&limit=10"
	h := signer.HTTPHeader(http.Header{"Content-Type": {"application/json"}})
	for _, c := range []struct {
		name   string
		method string
		body   []byte
		target float64
	}{
		{"GET", "GET", nil, 1.10},
		{"POST-1MiB", "POST", bytes.Repeat([]byte("a"), 1<<20), 0},
	} {
		for _, be := range testBackends(b, key) {
			b.Run(c.name+"/"+be, func(b *testing.B) {
				req := &signer.Request{Method: c.method, Host: "iaas.us-phoenix-1.oraclecloud.com", Target: target, Header: h, Body: c.body}
				now := time.Now()
				s, err := signer.SignWith(be, req, creds, now)
				if err != nil {
					b.Fatal(err)
				}
				// The reference signs the same string to the same bytes.
				sig, err := ref.Sign(1, c.body, []byte(s.SigningString))
				if err != nil {
					b.Fatal(err)
				}
				if !strings.Contains(s.Get("authorization"), `signature="`+base64.StdEncoding.EncodeToString(sig)+`"`) {
					b.Fatal("the reference's signature differs from Sign's")
				}
				const chunk = 10
				var sign, bare time.Duration
				phases := [2]func(n int){
					func(n int) {
						t := processCPU(b)
						for range n {
							if _, err := signer.SignWith(be, req, creds, now); err != nil {
								b.Fatal(err)
							}
						}
						sign += processCPU(b) - t
					},
					func(n int) {
						t := processCPU(b)
						if _, err := ref.Sign(n, c.body, []byte(s.SigningString)); err != nil {
							b.Fatal(err)
						}
						bare += processCPU(b) - t
					},
				}
				b.ResetTimer()
				for k, done := 0, 0; done < b.N; k, done = k+1, done+chunk {
					n := min(chunk, b.N-done)
					phases[k%2](n)
					phases[(k+1)%2](n)
				}
				b.StopTimer()
				b.ReportMetric(float64(sign.Nanoseconds())/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "openssl-cpu-ns/op")
				ratio := float64(sign) / float64(bare)
				b.ReportMetric(ratio, "x-openssl")
				if be == signer.BackendOpenSSL && c.target > 0 && ratio > c.target && b.N >= 200 {
					b.Logf("%s: Sign takes %.3fx OpenSSL's bare sign, over the %.2fx target", c.name, ratio, c.target)
				}
			})
		}
	}
}

// rss is the process's resident set in bytes, after a GC has returned what
// it can to the OS, so that only memory in use (Go's or C's) counts.
func rss(b *testing.B) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// BenchmarkOpenSSLRSS signs b.N times with the OpenSSL backend on every
// core, with a new key every 100 signatures (so keys are imported and
// freed as it goes), and reports how much the resident set grew between a
// fifth of the way and the end. A leak per signature or per key shows as
// growth; it fails above 2 MiB over 100,000 signatures or more:
//
//	go test ./signer -run '^$' -bench OpenSSLRSS -benchtime 100000x
//
// It is a benchmark, not a test, because 100,000 signatures take tens of
// seconds of CPU; 1024-bit keys keep that small. .ci/run runs it.
func BenchmarkOpenSSLRSS(b *testing.B) {
	primes := testPrimes(b)
	const perKey = 100
	workers := runtime.GOMAXPROCS(0)
	var before int64
	warm := b.N / 5
	b.ResetTimer()
	for done := 0; done < b.N; done += perKey {
		if done >= warm && before == 0 {
			b.StopTimer()
			before = rss(b)
			b.StartTimer()
		}
		k := done / perKey
		var key *rsa.PrivateKey
		for e := k; key == nil; e++ {
			key = keyOf(primes[k%4], primes[(k+1)%4], exponents[e%len(exponents)], k%2 == 0, k%3 == 0)
		}
		n := min(perKey, b.N-done)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if _, err := signer.SignDigestWith(signer.BackendOpenSSL, key, sha256.Sum256([]byte(strconv.Itoa(done+i)))); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	if before == 0 {
		before = rss(b)
	}
	grew := rss(b) - before
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Sys), "go-sys-bytes")
	b.ReportMetric(float64(ms.HeapInuse), "go-heap-bytes")
	b.ReportMetric(float64(grew), "rss-growth-bytes")
	b.ReportMetric(float64(grew)/float64(b.N-warm), "rss-bytes/op")
	if b.N >= 100_000 && grew > 2<<20 {
		b.Fatalf("RSS grew %d bytes over %d signatures", grew, b.N-warm)
	}
}
