package extproc

import (
	"bytes"
	"math/rand/v2"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// split cuts wire bytes into buffers of random sizes, as gRPC's receive path
// hands them over (one per HTTP/2 DATA frame, or smaller).
func split(r *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := 1 + r.IntN(min(len(b), 20000))
		out = append(out, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return out
}

// decodeBoth decodes wire with this codec and with the stock one and checks
// they agree: same message, body replaced by its digest.
func decodeBoth(t *testing.T, r *rand.Rand, wire []byte) {
	t.Helper()
	want := &extprocv3.ProcessingRequest{}
	stdErr := proto.Unmarshal(wire, want)
	f := frame{req: &extprocv3.ProcessingRequest{}}
	err := Codec().Unmarshal(split(r, wire), &f)
	if stdErr != nil {
		if err == nil {
			t.Fatalf("stock codec refuses (%v), this one accepts", stdErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("stock codec accepts, this one fails: %v", err)
	}
	if b := want.GetRequestBody(); b != nil && f.digest != nil {
		if got, w := *f.digest, signer.DigestOf(b.Body); got != w {
			t.Fatalf("digest %x/%d, want %x/%d", got.SHA256, got.Length, w.SHA256, w.Length)
		}
		if f.req.GetRequestBody().GetBody() != nil {
			t.Fatal("in-place decode must not copy the body out")
		}
		f.req.GetRequestBody().Body = b.Body
	}
	if !proto.Equal(f.req, want) {
		t.Fatalf("decoded\n%v\nwant\n%v", f.req, want)
	}
}

func TestCodecHashesBodyInPlace(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	attrs := map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{"x": structpb.NewStringValue("y")}}}
	for _, size := range []int{0, 1, 100, 16 << 10, 1<<20 + 7, 5 << 20} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		for _, msg := range []*extprocv3.ProcessingRequest{
			{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}},
			{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body}}, Attributes: attrs, ObservabilityMode: true,
				MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"a": {}}}},
		} {
			wire, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			f := frame{req: &extprocv3.ProcessingRequest{}}
			if err := Codec().Unmarshal(split(r, wire), &f); err != nil {
				t.Fatal(err)
			}
			if f.digest == nil {
				t.Fatalf("size %d: body was not hashed in place", size)
			}
			decodeBoth(t, r, wire)
		}
	}
}

func TestCodecOtherMessagesUnchanged(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	headers := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", RawValue: []byte("GET")}}}, EndOfStream: true}}}
	wire, _ := proto.Marshal(headers)
	decodeBoth(t, r, wire)
	f := frame{req: &extprocv3.ProcessingRequest{}}
	if err := Codec().Unmarshal(split(r, wire), &f); err != nil || f.digest != nil {
		t.Fatalf("headers: %v %v", err, f.digest)
	}
	// Fields out of Envoy's order: the body comes after another field. The
	// body is still found and hashed in place, not by the stock decoder's
	// fallback, which would leave its bytes in the message.
	tail, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("abc"), EndOfStream: true}}})
	head, _ := proto.Marshal(&extprocv3.ProcessingRequest{ObservabilityMode: true})
	decodeBoth(t, r, append(head, tail...))
	f = frame{req: &extprocv3.ProcessingRequest{}}
	if err := Codec().Unmarshal(split(r, append(head, tail...)), &f); err != nil || f.digest == nil || *f.digest != signer.DigestOf([]byte("abc")) {
		t.Fatalf("out-of-order body: %v %+v", err, f.digest)
	}
	if b := f.req.GetRequestBody(); b == nil || b.Body != nil || !b.EndOfStream || !f.req.ObservabilityMode {
		t.Fatalf("out-of-order body not decoded in place: %v", f.req)
	}
}

func FuzzCodec(f *testing.F) {
	for _, m := range []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("hello"), EndOfStream: true}}},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{}}, ObservabilityMode: true},
		{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b, uint64(1))
	}
	f.Add([]byte{0x22, 0x05, 0x0a, 0x10, 'a'}, uint64(2)) // body length beyond the message
	f.Fuzz(func(t *testing.T, wire []byte, seed uint64) {
		decodeBoth(t, rand.New(rand.NewPCG(seed, seed)), wire)
	})
}

func TestCodecMergesRepeatedBodyFields(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("first"), EndOfStream: true}}})
	b, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{GrpcMessageCompressed: true}}})
	c, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("second")}}})
	for _, wire := range [][]byte{append(a, b...), append(append(a, b...), c...)} {
		decodeBoth(t, r, wire)
	}
}

// The request oneof's last member on the wire wins, as in protobuf: a
// member after a body drops it, and a body after that starts afresh. Found
// by FuzzCodec; Envoy itself sends one member.
func TestCodecLastRequestMemberWins(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	body, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("dropped"), EndOfStream: true}}})
	trailers, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}})
	empty, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{}}})
	later, _ := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("kept")}}})
	for name, tc := range map[string]struct {
		wire []byte
		want *signer.Digest // nil: not a body
	}{
		"trailers after a body":          {append(bytes.Clone(body), trailers...), nil},
		"empty body after trailers":      {append(append(bytes.Clone(body), trailers...), empty...), &signer.Digest{SHA256: emptySHA256}},
		"body after trailers":            {append(append(bytes.Clone(body), trailers...), later...), ptr(signer.DigestOf([]byte("kept")))},
		"trailers field of another type": {append(bytes.Clone(body), 0x30, 0x01), ptr(signer.DigestOf([]byte("dropped")))},
	} {
		t.Run(name, func(t *testing.T) {
			decodeBoth(t, r, tc.wire)
			f := frame{req: &extprocv3.ProcessingRequest{}}
			if err := Codec().Unmarshal(split(r, tc.wire), &f); err != nil {
				t.Fatal(err)
			}
			if (f.digest == nil) != (tc.want == nil) || (f.digest != nil && *f.digest != *tc.want) {
				t.Fatalf("digest %+v, want %+v", f.digest, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
