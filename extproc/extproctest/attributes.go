package extproctest

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// This file is ext_proc's request_attributes: ExpressionManager (matching_utils.cc) compiles
// each configured CEL expression once, Filter::addAttributes (ext_proc.cc) evaluates them
// against the stream's activation when buildHeaderRequest builds a headers message, and the
// results go in ProcessingRequest.attributes under the filter's canonical name. The values
// come from the attribute wrappers of source/extensions/filters/common/expr/context.cc.

// extProcAttributesKey is ext_proc.cc's FilterName, the attributes map key whatever name
// the filter has in the configuration.
const extProcAttributesKey = "envoy.filters.http.ext_proc"

// connInfo is what Envoy's connection (its StreamInfo and connection info provider) holds
// beyond the bytes, for the requests on it.
type connInfo struct {
	tls        bool
	tlsVersion string // "TLSv1.2", "TLSv1.3" (SSL_get_version)
	// requestedServerName is set by tls_inspector only (tls_inspector.cc, setRequestedServerName).
	requestedServerName string
	// filterState holds the connection's filter state objects as their string
	// serialisation (envoy.string objects serialise to their value).
	filterState map[string]string
	// peer is the client certificate the handshake validated (downtls.go); nil when the
	// client sent none.
	peer *peerCert
}

// peerCert is what Ssl::ConnectionInfo tells of the peer certificate: its URI and DNS
// SANs in the certificate's order, and its subject in RFC 2253 form
// (Utility::getSubjectFromCertificate, X509_NAME_print_ex with XN_FLAG_RFC2253; Go's
// pkix.Name.String follows the same RFC, most specific attribute first).
type peerCert struct {
	uris, dns []string
	subject   string
}

type connInfoKey struct{}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

// attrInput is the activation: the request headers as they are when the message is built,
// the request and its connection.
type attrInput struct {
	headers *headerList
	r       *http.Request
	conn    *connInfo // nil for the plain HTTP listener
}

type attribute struct {
	expr string
	eval func(in attrInput) (*structpb.Value, bool)
}

// compileAttributes is ExpressionManager::initExpressions: repeated expressions are
// evaluated once. Expressions the stand-in cannot evaluate are refused rather than left
// out, which would look like an attribute Envoy had no value for.
func compileAttributes(exprs []string) ([]attribute, error) {
	var out []attribute
	seen := map[string]bool{}
	for _, x := range exprs {
		if seen[x] {
			continue
		}
		seen[x] = true
		eval, err := compileAttribute(x)
		if err != nil {
			return nil, err
		}
		out = append(out, attribute{expr: x, eval: eval})
	}
	return out, nil
}

func compileAttribute(x string) (func(attrInput) (*structpb.Value, bool), error) {
	if key, ok := filterStateKey(x); ok {
		// FilterStateWrapper: an object without a CelState or reflection is its
		// serializeAsString as bytes, which evaluateAttributes prints as a string.
		return func(in attrInput) (*structpb.Value, bool) {
			if in.conn == nil {
				return nil, false
			}
			v, ok := in.conn.filterState[key]
			return structpb.NewStringValue(v), ok
		}, nil
	}
	if h, ok := requestHeaderAttributes[x]; ok {
		return func(in attrInput) (*structpb.Value, bool) {
			v, ok := in.headers.get(h)
			return structpb.NewStringValue(v), ok
		}, nil
	}
	switch x {
	case "connection.requested_server_name":
		// ConnectionWrapper: a string view of the connection's requested server name,
		// present (empty) when nothing set it.
		return func(in attrInput) (*structpb.Value, bool) {
			if in.conn == nil {
				return structpb.NewStringValue(""), true
			}
			return structpb.NewStringValue(in.conn.requestedServerName), true
		}, nil
	case "connection.mtls":
		// ConnectionLookupValues MTLS: an SSL connection whose peer presented a certificate.
		return func(in attrInput) (*structpb.Value, bool) {
			return structpb.NewBoolValue(in.conn != nil && in.conn.tls && in.conn.peer != nil), true
		}, nil
	case "connection.uri_san_peer_certificate", "connection.dns_san_peer_certificate", "connection.subject_peer_certificate":
		return peerAttribute(x), nil
	case "connection.tls_version":
		return func(in attrInput) (*structpb.Value, bool) {
			if in.conn == nil || !in.conn.tls {
				return nil, false
			}
			return structpb.NewStringValue(in.conn.tlsVersion), true
		}, nil
	case "request.protocol":
		// Http::Utility::getProtocolString.
		return func(in attrInput) (*structpb.Value, bool) {
			if in.r.ProtoMajor == 2 {
				return structpb.NewStringValue("HTTP/2"), true
			}
			return structpb.NewStringValue(fmt.Sprintf("HTTP/%d.%d", in.r.ProtoMajor, in.r.ProtoMinor)), true
		}, nil
	}
	return nil, fmt.Errorf("%w: request attribute %q", ErrUnsupported, x)
}

// peerAttribute is context.cc's SslExtractorsValues for the peer certificate, which
// ConnectionWrapper::operator[] consults only on an SSL connection (absent otherwise):
// URISanPeerCertificate and DNSSanPeerCertificate are the FIRST such SAN, absent when the
// certificate has none; SubjectPeerCertificate is the subject, "" without a certificate.
// All three are strings (CelValue::CreateString).
func peerAttribute(x string) func(attrInput) (*structpb.Value, bool) {
	return func(in attrInput) (*structpb.Value, bool) {
		if in.conn == nil || !in.conn.tls {
			return nil, false
		}
		p := in.conn.peer
		if p == nil {
			p = &peerCert{}
		}
		var list []string
		switch x {
		case "connection.subject_peer_certificate":
			return structpb.NewStringValue(p.subject), true
		case "connection.uri_san_peer_certificate":
			list = p.uris
		default:
			list = p.dns
		}
		if len(list) == 0 {
			return nil, false
		}
		return structpb.NewStringValue(list[0]), true
	}
}

// requestHeaderAttributes are RequestWrapper's attributes read from a request header.
var requestHeaderAttributes = map[string]string{
	"request.host":       ":authority",
	"request.path":       ":path",
	"request.method":     ":method",
	"request.scheme":     ":scheme",
	"request.id":         "x-request-id",
	"request.user_agent": "user-agent",
	"request.referer":    "referer",
}

// filterStateKey parses filter_state['KEY'] and filter_state["KEY"] (no escapes).
func filterStateKey(x string) (string, bool) {
	rest, ok := strings.CutPrefix(x, "filter_state[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	lit := rest[:len(rest)-1]
	if len(lit) < 2 || (lit[0] != '\'' && lit[0] != '"') || lit[len(lit)-1] != lit[0] {
		return "", false
	}
	key := lit[1 : len(lit)-1]
	if strings.ContainsAny(key, `\'"`) {
		return "", false
	}
	return key, true
}

// requestAttributes is what Filter::addAttributes puts on the request headers message: nil
// when no request_attributes are configured, else the Struct, possibly empty.
func (f *filter) requestAttributes() map[string]*structpb.Struct {
	if len(f.cfg.attrs) == 0 {
		return nil
	}
	in := attrInput{headers: f.reqHeaders, r: f.r, conn: connInfoFrom(f.r.Context())}
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, a := range f.cfg.attrs {
		if v, ok := a.eval(in); ok {
			st.Fields[a.expr] = v
		}
	}
	return map[string]*structpb.Struct{extProcAttributesKey: st}
}

// setRequestAttributes adds the attributes to the request headers message.
func (f *filter) setRequestAttributes(req *extprocv3.ProcessingRequest) {
	req.Attributes = f.requestAttributes()
}
