package extproctest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// UpstreamTLS is the upstream cluster's TLS: the transport socket
// envoy.transport_sockets.tls with an UpstreamTlsContext, and the cluster's
// upstream_http_protocol_options. It models the fields ocisigner's
// deployments use: envoy.yaml's dynamic forward proxy cluster (auto_sni,
// auto_san_validation, trusted_ca) and the cluster Istio builds from a
// DestinationRule with TLS mode SIMPLE (sni, subjectAltNames, caCertificates).
type UpstreamTLS struct {
	// TrustedCA is validation_context.trusted_ca: the chain must end in one
	// of these. Nil means no validation context, and then Envoy does not
	// verify the certificate at all.
	TrustedCA *x509.CertPool
	// SNI is UpstreamTlsContext.sni, the server name asked for on every
	// connection; empty sends none.
	SNI string
	// AutoSNI is upstream_http_protocol_options.auto_sni: the server name is
	// the host of the request's :authority as the filters left it (before
	// the router's own host rewrites), unless it is an IP address.
	AutoSNI bool
	// AutoSANValidation is upstream_http_protocol_options.auto_san_validation:
	// the certificate must name that host. It takes the place of
	// SubjectAltNames for the request.
	AutoSANValidation bool
	// SubjectAltNames is validation_context.match_typed_subject_alt_names
	// with DNS exact matchers: the certificate must name one of them.
	SubjectAltNames []string
}

// upstreamTLSFor is what Envoy's router sets up for one request
// (source/common/router/router.cc Filter::decodeHeaders): with auto_sni the
// filter state UpstreamServerName is the host of :authority, parsed by
// Http::Utility::parseAuthority (no port; not set for an IP address), and
// with auto_san_validation UpstreamSubjectAltNames is that host. Both are
// transport socket options, so they also key the connection pool: a
// connection made for one host is never reused for another. The returned
// key names the pool.
func (u *UpstreamTLS) upstreamTLSFor(addr, authority string) (*tls.Config, string) {
	host := authorityHost(authority)
	sni, sans := u.SNI, u.SubjectAltNames
	if u.AutoSNI && net.ParseIP(host) == nil {
		sni = host
	}
	if u.AutoSANValidation {
		sans = []string{host}
	}
	cfg := &tls.Config{
		ServerName: sni,
		// envoy.yaml's tls_minimum_protocol_version.
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, so that it is Envoy's: the
		// chain against trusted_ca, then the names, each only when configured.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyUpstream(cs, u.TrustedCA, sans)
		},
	}
	return cfg, fmt.Sprintf("%s|tls|%s|%s", addr, sni, strings.Join(sans, ","))
}

// verifyUpstream is Envoy's default certificate validator
// (source/common/tls/cert_validator/default_validator.cc): the chain must
// verify against the trusted CA, and the leaf must carry one of the subject
// alt names as a DNS name, a "*." wildcard matching one label
// (Utility::dnsNameMatch), which is also x509's VerifyHostname rule.
func verifyUpstream(cs tls.ConnectionState, roots *x509.CertPool, sans []string) error {
	if roots == nil {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("TLS_error: no peer certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("TLS_error: CERTIFICATE_VERIFY_FAILED: %w", err)
	}
	if len(sans) > 0 && !slices.ContainsFunc(sans, func(n string) bool { return leaf.VerifyHostname(n) == nil }) {
		return fmt.Errorf("TLS_error: CERTIFICATE_VERIFY_FAILED: the certificate names none of %v", sans)
	}
	return nil
}

// authorityHost is the host part of an :authority: no port, no brackets.
func authorityHost(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return strings.Trim(authority, "[]")
}
