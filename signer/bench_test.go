package signer_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// BenchmarkSign signs the same requests with oci-go-sdk's signer and with
// ocisigner's, RSA-2048, allocations reported. Each ocisigner line also
// reports x-sdk: its ns/op divided by the SDK's ns/op from the same run.
//
//	go test ./signer -run '^$' -bench Sign -benchmem
func BenchmarkSign(b *testing.B) {
	key := signertest.Key(b, 1)
	creds := &signer.Credentials{KeyID: "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/" + signer.Fingerprint(&key.PublicKey), Key: key}
	cases := []struct {
		name   string
		method string
		body   []byte
	}{
		{"GET", "GET", nil},
		{"POST-1KiB", "POST", bytes.Repeat([]byte("a"), 1<<10)},
		{"POST-1MiB", "POST", bytes.Repeat([]byte("a"), 1<<20)},
	}
	u, _ := url.Parse("https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances?compartmentId=ocid1.compartment.oc1..x&limit=10")
	now := time.Now()
	for _, c := range cases {
		var sdkNs float64
		b.Run(c.name+"/sdk", func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				req := &http.Request{Method: c.method, URL: u, Host: u.Host, Header: http.Header{"Content-Type": {"application/json"}}}
				if c.body != nil {
					req.Body = io.NopCloser(bytes.NewReader(c.body))
				}
				req.Header.Set("Date", signer.FormatDate(now))
				sdkSign(b, req, creds)
			}
			sdkNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
		})
		b.Run(c.name+"/ocisigner", func(b *testing.B) {
			b.ReportAllocs()
			h := signer.HTTPHeader(http.Header{"Content-Type": {"application/json"}})
			start := time.Now()
			for b.Loop() {
				_, err := signer.Sign(&signer.Request{Method: c.method, Host: u.Host, Target: u.RequestURI(), Header: h, Body: c.body}, creds, now)
				if err != nil {
					b.Fatal(err)
				}
			}
			if sdkNs > 0 {
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/sdkNs, "x-sdk")
			}
		})
	}
}
