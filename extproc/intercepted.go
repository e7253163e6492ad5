package extproc

import (
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// HTTPS interception. A client that trusts ocisigner's CA sends
// CONNECT host:443 to Envoy, which terminates the CONNECT into an internal
// listener, finishes the TLS handshake with a leaf ocisigner's SDS minted
// for the SNI, and runs the decrypted requests through the same signing
// filter as the proxy form. envoy.yaml's signing filter asks Envoy for two
// request attributes, which arrive on the request headers message
// (ProcessingRequest.attributes["envoy.filters.http.ext_proc"]):
//
//   - AttrSNI, the TLS server name the client asked for; only the internal
//     listener's tls_inspector sets it, and it is "" on a plain connection;
//   - AttrConnectHost, the CONNECT's :authority, stored by a
//     set_filter_state filter on the CONNECT route under ConnectAuthorityKey
//     and carried into the internal listener's connection by the
//     internal_upstream transport socket; absent on every other request.
//
// A request with neither is a plain one (proxy or gateway form) and is
// unaffected. An intercepted one is signed only when the SNI, the CONNECT
// host and its own :authority name the same host: anything else is a client
// steering a tunnel opened for one host to another (421).
const (
	AttrSNI             = "connection.requested_server_name"
	ConnectAuthorityKey = "ocisigner.connect_authority"
	AttrConnectHost     = "filter_state['" + ConnectAuthorityKey + "']"
)

// CodeCredentialMinting refuses a request that would mint credentials of
// the caller's own from the gateway's identity (minting.go).
const CodeCredentialMinting = "CredentialMintingNotAllowed"

// screen runs the checks every signing-stage request passes before its
// profile is looked at: an intercepted request's hosts, and credential
// minting.
func (s *Server) screen(st *stream, forwarded *corev3.Metadata) *refusal {
	if r := checkIntercepted(st, forwarded); r != nil {
		return r
	}
	return s.checkMinting(&st.h)
}

// checkIntercepted refuses an intercepted request whose SNI, CONNECT host
// and :authority differ, and a configuration that delivers one of the two
// attributes without the other (it would hide exactly that check).
func checkIntercepted(st *stream, forwarded *corev3.Metadata) *refusal {
	fields := st.attributes[ExtProcAttributesKey].GetFields()
	connect, intercepted := stringAttr(fields, AttrConnectHost)
	sni, _ := stringAttr(fields, AttrSNI)
	switch {
	case !intercepted && sni == "":
		return nil // a plain request
	case !intercepted:
		return refuse(http.StatusInternalServerError, CodeMisconfigured, fmt.Sprintf(
			"Envoy sent a TLS server name (%s) but no CONNECT host (%s): the internal listener's cluster needs the "+
				"envoy.transport_sockets.internal_upstream transport socket and the CONNECT route the set_filter_state filter, as envoy.yaml has them",
			AttrSNI, AttrConnectHost))
	case sni == "":
		return refuse(http.StatusInternalServerError, CodeMisconfigured, fmt.Sprintf(
			"Envoy sent a CONNECT host but no TLS server name (%s): the internal listener needs the envoy.filters.listener.tls_inspector listener filter, as envoy.yaml has it",
			AttrSNI))
	}
	if meta := forwarded.GetFilterMetadata()[MetadataNamespace].GetFields(); meta["outcome"].GetStringValue() == OutcomeAddressed {
		return refuse(http.StatusMisdirectedRequest, CodeMisdirected, fmt.Sprintf(
			"this connection was opened for %s; send its requests to that host, not in the gateway form (/<host>/...)", capEcho(connect)))
	}
	if !sameHost(connect, sni, st.h.authority) {
		return refuse(http.StatusMisdirectedRequest, CodeMisdirected, fmt.Sprintf(
			"this connection was opened for %s (CONNECT) with TLS server name %s, and a request on it is signed only for that host, not for %s: open a connection to that host",
			capEcho(connect), capEcho(sni), capEcho(st.h.authority)))
	}
	return nil
}

// sameHost reports whether the CONNECT authority, the SNI and the
// request's :authority name one host. Ports are compared too: a CONNECT
// or :authority port other than 443 (none, once strip_any_host_port
// removed it) is not the host the leaf was minted for.
func sameHost(connect, sni, authority string) bool {
	c, err1 := signer.ParseAuthority(connect)
	a, err2 := signer.ParseAuthority(authority)
	if err1 != nil || err2 != nil || c.IP || a.IP {
		return false
	}
	for _, p := range []string{c.Port, a.Port} {
		if p != "" && p != "443" {
			return false
		}
	}
	// ParseAuthority lower-cases host names; a client may send SNI in any case.
	return a.Host == c.Host && strings.ToLower(sni) == c.Host
}

func stringAttr(fields map[string]*structpb.Value, key string) (string, bool) {
	v, ok := fields[key]
	if !ok {
		return "", false
	}
	return v.GetStringValue(), true
}

// checkMinting refuses a credential-minting call unless the operator
// allowed them.
func (s *Server) checkMinting(h *requestHeaders) *refusal {
	if s.cfg.AllowCredentialMinting {
		return nil
	}
	op, ok := credentialMinting(h.method, h.authority, h.path)
	if !ok {
		return nil
	}
	return refuse(http.StatusForbidden, CodeCredentialMinting, fmt.Sprintf(
		"%s would mint credentials of the caller's own from this gateway's identity, usable without the gateway; "+
			"this gateway refuses that (its operator can allow it with --allow-credential-minting)", op))
}
