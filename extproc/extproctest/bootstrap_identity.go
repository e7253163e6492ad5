package extproctest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// What FromBootstrap reads of a shared gateway's identity: the listener's
// DownstreamTlsContext and a jwt_authn filter, as far as the stand-in reproduces them.

// readDownstreamTLS reads a filter chain's transport socket; nil for a plain listener.
func readDownstreamTLS(fc *listenerv3.FilterChain) (*DownstreamTLS, error) {
	ts := fc.GetTransportSocket()
	if ts == nil {
		return nil, nil
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if ts.GetName() != "envoy.transport_sockets.tls" || ts.GetTypedConfig().UnmarshalTo(ctx) != nil {
		return nil, fmt.Errorf("%w: transport socket %s", ErrUnsupported, ts.GetName())
	}
	if err := supportedFields(ctx, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	cc := ctx.GetCommonTlsContext()
	if err := supportedFields(cc, "tls_certificates", "validation_context", "tls_params"); err != nil {
		return nil, err
	}
	if err := supportedFields(cc.GetTlsParams(), "tls_minimum_protocol_version"); err != nil {
		return nil, err
	}
	if len(cc.GetTlsCertificates()) != 1 {
		return nil, fmt.Errorf("%w: %d tls_certificates (one is reproduced)", ErrUnsupported, len(cc.GetTlsCertificates()))
	}
	tc := cc.GetTlsCertificates()[0]
	if err := supportedFields(tc, "certificate_chain", "private_key"); err != nil {
		return nil, err
	}
	chain, err := readDataSource(tc.GetCertificateChain())
	if err != nil {
		return nil, err
	}
	key, err := readDataSource(tc.GetPrivateKey())
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("%w: tls_certificates: %v", ErrConfig, err)
	}
	d := &DownstreamTLS{Certificate: cert, RequireClientCertificate: ctx.GetRequireClientCertificate().GetValue()}
	switch cc.GetTlsParams().GetTlsMinimumProtocolVersion() {
	case tlsv3.TlsParameters_TLSv1_3:
		d.MinVersion = tls.VersionTLS13
	case tlsv3.TlsParameters_TLS_AUTO, tlsv3.TlsParameters_TLSv1_2:
	default:
		return nil, fmt.Errorf("%w: tls_minimum_protocol_version below TLS 1.2", ErrUnsupported)
	}
	if vc := cc.GetValidationContext(); vc != nil {
		// No SAN matchers, CRLs, trust_chain_verification or custom validators: a
		// validation context that only names the CAs the client's chain must end in.
		if err := supportedFields(vc, "trusted_ca"); err != nil {
			return nil, err
		}
		pem, err := readDataSource(vc.GetTrustedCa())
		if err != nil {
			return nil, err
		}
		d.ClientCAs = x509.NewCertPool()
		if !d.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: validation_context.trusted_ca holds no certificate", ErrConfig)
		}
	}
	return d, d.validate()
}

// readDataSource reads a DataSource's filename or inline value.
func readDataSource(ds *corev3.DataSource) ([]byte, error) {
	switch {
	case ds.GetFilename() != "":
		b, err := os.ReadFile(ds.GetFilename())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		return b, nil
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString()), nil
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes(), nil
	}
	return nil, fmt.Errorf("%w: an empty or unsupported DataSource", ErrUnsupported)
}

// readJWTAuthn reads a JwtAuthentication.
func readJWTAuthn(ja *jwtauthnv3.JwtAuthentication) (*JWTAuthn, error) {
	if err := supportedFields(ja, "providers", "rules"); err != nil {
		return nil, err
	}
	out := &JWTAuthn{Providers: map[string]JWTProvider{}}
	for name, p := range ja.GetProviders() {
		// Nothing that writes more than the payload into the metadata namespace, and no
		// extraction without validation.
		if err := supportedFields(p, "issuer", "audiences", "local_jwks", "forward", "from_headers", "payload_in_metadata",
			"clock_skew_seconds"); err != nil {
			return nil, fmt.Errorf("jwt_authn provider %s: %w", name, err)
		}
		jwks, err := readDataSource(p.GetLocalJwks())
		if err != nil {
			return nil, fmt.Errorf("jwt_authn provider %s: local_jwks: %w", name, err)
		}
		jp := JWTProvider{Issuer: p.GetIssuer(), Audiences: p.GetAudiences(), JWKS: jwks, Forward: p.GetForward(),
			PayloadInMetadata: p.GetPayloadInMetadata(), ClockSkew: time.Duration(p.GetClockSkewSeconds()) * time.Second}
		for _, h := range p.GetFromHeaders() {
			jp.FromHeaders = append(jp.FromHeaders, JWTHeader{Name: h.GetName(), ValuePrefix: h.GetValuePrefix()})
		}
		out.Providers[name] = jp
	}
	for _, r := range ja.GetRules() {
		if err := supportedFields(r, "match", "requires"); err != nil {
			return nil, err
		}
		if err := supportedFields(r.GetMatch(), "prefix"); err != nil {
			return nil, err
		}
		req, err := readJWTRequirement(r.GetRequires())
		if err != nil {
			return nil, err
		}
		out.Rules = append(out.Rules, JWTRule{Prefix: r.GetMatch().GetPrefix(), Requires: req})
	}
	return out, nil
}

func readJWTRequirement(r *jwtauthnv3.JwtRequirement) (JWTRequirement, error) {
	if err := supportedFields(r, "provider_name", "requires_any", "allow_missing", "allow_missing_or_failed"); err != nil {
		return JWTRequirement{}, err
	}
	out := JWTRequirement{ProviderName: r.GetProviderName(), AllowMissing: r.GetAllowMissing() != nil,
		AllowMissingOrFailed: r.GetAllowMissingOrFailed() != nil}
	for _, x := range r.GetRequiresAny().GetRequirements() {
		rx, err := readJWTRequirement(x)
		if err != nil {
			return JWTRequirement{}, err
		}
		out.RequiresAny = append(out.RequiresAny, rx)
	}
	return out, nil
}
