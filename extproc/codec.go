package extproc

import (
	"crypto/sha256"
	"errors"
	"hash"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec this one wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ocisigner/ocisigner/signer"
)

// Field numbers of the wire format this codec reads directly.
const (
	fieldRequestBody = 4 // ProcessingRequest.request_body
	fieldBodyBytes   = 1 // HttpBody.body
)

// frame is what the server receives from Envoy: the ProcessingRequest and,
// for a request body, the body's length and SHA-256.
//
// The body of a BUFFERED request arrives as one gRPC message that can be
// tens of MiB. The stock codec copies it twice (gRPC gathers its receive
// buffers into one, then protobuf copies the bytes field out of that) only
// for ocisigner to hash it. For a request_body frame this codec hashes the
// body where it lies, in gRPC's receive buffers, and leaves HttpBody.Body
// nil: ocisigner never changes a body, Envoy keeps its own copy.
type frame struct {
	req    *extprocv3.ProcessingRequest
	digest *signer.Digest // set for a request_body decoded in place
	// tooLarge marks a message other than a request body that is larger
	// than maxHeadersMessage: it is not decoded at all, and refused.
	tooLarge bool
}

// maxHeadersMessage bounds every message but a request body. Envoy's header
// maps stay under 60 KiB by default (max_request_headers_kb, at most 8 MiB
// when raised); a bigger message is not worth copying and parsing, which
// costs several times its size.
const maxHeadersMessage = 1 << 20

// Codec is the gRPC codec the ext_proc server must be registered with
// (grpc.ForceServerCodecV2(extproc.Codec())). It is the proto codec for every
// message except the server's own frames, which it decodes as above.
func Codec() encoding.CodecV2 { return codec{std: encoding.GetCodecV2("proto")} }

type codec struct{ std encoding.CodecV2 }

func (c codec) Name() string                           { return "proto" }
func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	f.digest, f.tooLarge = nil, false
	if data.Len() > maxHeadersMessage {
		if last, err := lastRequestMember(newCursor(data)); err == nil && last != fieldRequestBody {
			f.req.Reset()
			f.tooLarge = true
			return nil
		}
	}
	if err := f.decode(newCursor(data)); err != nil {
		// Not a shape this reader knows: decode the ordinary way, which also
		// gives the ordinary error for a broken message.
		f.digest = nil
		f.req.Reset()
		if err := c.std.Unmarshal(data, f.req); err != nil {
			return err
		}
		if b := f.req.GetRequestBody(); b != nil {
			d := signer.DigestOf(b.Body)
			f.digest = &d
		}
	}
	return nil
}

var errShape = errors.New("unexpected wire shape")

// requestOneof holds the field numbers of ProcessingRequest's request oneof.
// Protobuf lets the last of them on the wire win: one that follows a
// request_body drops that body.
var requestOneof = func() map[protowire.Number]bool {
	m := map[protowire.Number]bool{}
	fields := (&extprocv3.ProcessingRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("request").Fields()
	for i := range fields.Len() {
		m[fields.Get(i).Number()] = true
	}
	return m
}()

// decode reads a ProcessingRequest. A request_body is hashed in place; the
// other fields (small: headers, metadata, attributes) are copied out and
// unmarshalled the ordinary way. Envoy writes fields in number order and Go
// writes oneofs last, so the body is looked for wherever it is.
func (f *frame) decode(cur *cursor) error {
	f.req.Reset()
	var (
		rest   []byte
		body   = &extprocv3.HttpBody{}
		digest = &signer.Digest{}
		h      = sha256.New()
		seen   bool
	)
	for !cur.done() {
		mark := len(rest)
		num, typ, rest2, err := cur.tagRaw(rest)
		if err != nil {
			return err
		}
		rest = rest2
		if num == fieldRequestBody && typ == protowire.BytesType {
			rest = rest[:mark]
			n, err := cur.varint()
			if err != nil || n > uint64(cur.remaining()) {
				return errShape
			}
			// Repeated occurrences merge, as protobuf merges them: the body keeps
			// its fields and a later body bytes field replaces the earlier one.
			if err := decodeHTTPBody(cur, int(n), body, digest, h); err != nil {
				return err
			}
			seen = true
			continue
		}
		if seen && typ == protowire.BytesType && requestOneof[num] {
			// Only a message on the wire switches the oneof; another type
			// is an unknown field and leaves the body in place.
			body, seen = &extprocv3.HttpBody{}, false
			*digest = signer.Digest{}
			h.Reset()
		}
		if rest, err = cur.appendValue(rest, typ); err != nil {
			return err
		}
	}
	if len(rest) > 0 {
		if err := proto.Unmarshal(rest, f.req); err != nil {
			return err
		}
	}
	if seen {
		h.Sum(digest.SHA256[:0])
		f.req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}
		f.digest = digest
	}
	return nil
}

// lastRequestMember walks a ProcessingRequest's top-level fields without
// copying them and returns the number of the request oneof member that wins
// (the last on the wire), or 0 if there is none.
func lastRequestMember(cur *cursor) (protowire.Number, error) {
	var last protowire.Number
	for !cur.done() {
		num, typ, err := cur.tag()
		if err != nil {
			return 0, err
		}
		if err := cur.skip(typ); err != nil {
			return 0, err
		}
		if typ == protowire.BytesType && requestOneof[num] {
			last = num
		}
	}
	return last, nil
}

// decodeHTTPBody hashes HttpBody.body in place and unmarshals the rest of
// the HttpBody (end_of_stream and whatever else this Envoy sends) normally.
func decodeHTTPBody(cur *cursor, n int, body *extprocv3.HttpBody, d *signer.Digest, h hash.Hash) error {
	end := cur.consumed + n
	var other []byte
	for cur.consumed < end {
		mark := len(other)
		num, typ, raw, err := cur.tagRaw(other)
		if err != nil {
			return err
		}
		other = raw
		if num == fieldBodyBytes && typ == protowire.BytesType {
			other = other[:mark]
			l, err := cur.varint()
			if err != nil || cur.consumed+int(l) > end {
				return errShape
			}
			h.Reset()
			if err := cur.take(int(l), func(b []byte) { h.Write(b) }); err != nil {
				return err
			}
			d.Length = int64(l)
			continue
		}
		if other, err = cur.appendValue(other, typ); err != nil {
			return err
		}
	}
	if cur.consumed != end {
		return errShape
	}
	if len(other) > 0 {
		return proto.UnmarshalOptions{Merge: true}.Unmarshal(other, body)
	}
	return nil
}

// cursor reads protobuf wire format across gRPC's receive buffers without
// gathering them.
type cursor struct {
	bufs     [][]byte
	i, off   int
	consumed int
	total    int
}

func newCursor(data mem.BufferSlice) *cursor {
	c := &cursor{bufs: make([][]byte, 0, len(data))}
	for _, b := range data {
		if d := b.ReadOnlyData(); len(d) > 0 {
			c.bufs = append(c.bufs, d)
			c.total += len(d)
		}
	}
	return c
}

func (c *cursor) done() bool     { return c.consumed >= c.total }
func (c *cursor) remaining() int { return c.total - c.consumed }

func (c *cursor) readByte() (byte, error) {
	for c.i < len(c.bufs) && c.off >= len(c.bufs[c.i]) {
		c.i++
		c.off = 0
	}
	if c.i >= len(c.bufs) {
		return 0, errShape
	}
	b := c.bufs[c.i][c.off]
	c.off++
	c.consumed++
	return b, nil
}

func (c *cursor) varint() (uint64, error) {
	v, _, err := c.varintRaw(nil)
	return v, err
}

// varintRaw reads a varint and appends its bytes as they were written:
// unknown fields are kept byte for byte, as protobuf keeps them.
func (c *cursor) varintRaw(dst []byte) (uint64, []byte, error) {
	var v uint64
	for shift := uint(0); shift < 70; shift += 7 {
		b, err := c.readByte()
		if err != nil {
			return 0, dst, err
		}
		dst = append(dst, b)
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			if shift == 63 && b > 1 {
				return 0, dst, errShape
			}
			return v, dst, nil
		}
	}
	return 0, dst, errShape
}

func (c *cursor) tag() (protowire.Number, protowire.Type, error) {
	num, typ, _, err := c.tagRaw(nil)
	return num, typ, err
}

func (c *cursor) tagRaw(dst []byte) (protowire.Number, protowire.Type, []byte, error) {
	v, dst, err := c.varintRaw(dst)
	if err != nil {
		return 0, 0, dst, err
	}
	if v>>3 > uint64(protowire.MaxValidNumber) {
		return 0, 0, dst, errShape
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber {
		return 0, 0, dst, errShape
	}
	return num, typ, dst, nil
}

// take passes the next n bytes to fn, one contiguous piece at a time.
func (c *cursor) take(n int, fn func([]byte)) error {
	if n < 0 || n > c.remaining() {
		return errShape
	}
	for n > 0 {
		for c.off >= len(c.bufs[c.i]) {
			c.i++
			c.off = 0
		}
		chunk := c.bufs[c.i][c.off:]
		if len(chunk) > n {
			chunk = chunk[:n]
		}
		fn(chunk)
		c.off += len(chunk)
		c.consumed += len(chunk)
		n -= len(chunk)
	}
	return nil
}

// skip passes over one field value of wire type typ.
func (c *cursor) skip(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := c.varint()
		return err
	case protowire.Fixed32Type:
		return c.take(4, func([]byte) {})
	case protowire.Fixed64Type:
		return c.take(8, func([]byte) {})
	case protowire.BytesType:
		n, err := c.varint()
		if err != nil || n > uint64(c.remaining()) {
			return errShape
		}
		return c.take(int(n), func([]byte) {})
	}
	return errShape
}

// appendValue copies one field value of wire type typ to dst.
func (c *cursor) appendValue(dst []byte, typ protowire.Type) ([]byte, error) {
	switch typ {
	case protowire.VarintType:
		_, dst, err := c.varintRaw(dst)
		return dst, err
	case protowire.Fixed32Type:
		return dst, c.take(4, func(b []byte) { dst = append(dst, b...) })
	case protowire.Fixed64Type:
		return dst, c.take(8, func(b []byte) { dst = append(dst, b...) })
	case protowire.BytesType:
		n, dst, err := c.varintRaw(dst)
		if err != nil || n > uint64(c.remaining()) {
			return dst, errShape
		}
		return dst, c.take(int(n), func(b []byte) { dst = append(dst, b...) })
	}
	return dst, errShape // groups do not occur in proto3
}
