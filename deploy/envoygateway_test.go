package deploy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ocisigner/ocisigner/signer"
)

// The Envoy Gateway mode's objects, decoded into Envoy Gateway's (v1.7.0)
// and Gateway API's types, and the Envoy configuration Envoy Gateway's
// translator emits for them, reproduced from its source and validated with
// go-control-plane.
type egObjects struct {
	backends        []*egv1a1.Backend
	routes          []*gwapiv1.HTTPRoute
	extPolicies     []*egv1a1.EnvoyExtensionPolicy
	trafficPolicies []*egv1a1.BackendTrafficPolicy
}

func (o *egObjects) decode(kind string, doc []byte) (bool, error) {
	switch kind {
	case "gateway.envoyproxy.io/v1alpha1 Backend":
		return true, decodeInto(doc, &o.backends)
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		return true, decodeInto(doc, &o.routes)
	case "gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy":
		return true, decodeInto(doc, &o.extPolicies)
	case "gateway.envoyproxy.io/v1alpha1 BackendTrafficPolicy":
		return true, decodeInto(doc, &o.trafficPolicies)
	}
	return false, nil
}

// egNamespace is the namespace the chart is rendered into (renderChart).
const egNamespace = "apps"

// egExtProc is what Envoy Gateway v1.7.0 emits for the policy's ext_proc
// entry idx on the route it targets:
//   - internal/gatewayapi/envoyextensionpolicy.go (*Translator).buildExtProc:
//     the IR (authority <service>.<namespace>:<port>, messageTimeout,
//     failOpen, the processing mode, the metadata namespaces);
//   - internal/xds/translator/extproc.go extProcConfig and buildProcessingMode:
//     the ExternalProcessor (grpc_service timeout defaultExtServiceRequestTimeout,
//     10 s in utils.go; no mutation_rules, status_on_error or
//     max_message_timeout: Envoy's defaults);
//   - buildHCMExtProcFilter: the HTTP filter, named
//     envoy.filters.http.ext_proc/envoyextensionpolicy/<ns>/<name>/extproc/<idx>
//     (perRouteFilterName, irConfigNameForExtProc), disabled by default;
//   - patchRoute: enabled on the route by a FilterConfig with an empty config.
func egExtProc(p *egv1a1.EnvoyExtensionPolicy, idx int) (*hcmv3.HttpFilter, *routev3.FilterConfig, error) {
	ep := p.Spec.ExtProc[idx]
	if len(ep.BackendRefs) == 0 {
		return nil, nil, errors.New("ext_proc without backendRefs")
	}
	ref := ep.BackendRefs[0]
	ns := egNamespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	authority := fmt.Sprintf("%s.%s", ref.Name, ns)
	if ref.Port != nil {
		authority = fmt.Sprintf("%s:%d", authority, *ref.Port)
	}
	name := fmt.Sprintf("envoyextensionpolicy/%s/%s/extproc/%d", egNamespace, p.Name, idx)
	cfg := &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: strings.ToLower(fmt.Sprintf("EnvoyExtensionPolicy/%s/%s/extproc/%d", egNamespace, p.Name, idx)),
				Authority:   authority,
			}},
			Timeout: durationpb.New(10 * time.Second),
		},
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode: extprocv3.ProcessingMode_SKIP, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP,
			RequestBodyMode: extprocv3.ProcessingMode_NONE, ResponseBodyMode: extprocv3.ProcessingMode_NONE,
			RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
	}
	if err := egProcessingMode(cfg, ep.ProcessingMode); err != nil {
		return nil, nil, err
	}
	if ep.FailOpen != nil {
		cfg.FailureModeAllow = *ep.FailOpen
	}
	if ep.MessageTimeout != nil {
		d, err := time.ParseDuration(string(*ep.MessageTimeout))
		if err != nil {
			return nil, nil, fmt.Errorf("messageTimeout: %w", err)
		}
		cfg.MessageTimeout = durationpb.New(d)
	}
	if md := ep.Metadata; md != nil && (md.AccessibleNamespaces != nil || md.WritableNamespaces != nil) {
		cfg.MetadataOptions = &extprocv3.MetadataOptions{}
		if md.AccessibleNamespaces != nil {
			cfg.MetadataOptions.ForwardingNamespaces = &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: md.AccessibleNamespaces}
		}
		if md.WritableNamespaces != nil {
			cfg.MetadataOptions.ReceivingNamespaces = &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: md.WritableNamespaces}
		}
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	filter := &hcmv3.HttpFilter{Name: string(egv1a1.EnvoyFilterExtProc) + "/" + name, Disabled: true,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
	return filter, &routev3.FilterConfig{Config: &anypb.Any{}}, nil
}

// egProcessingMode is buildExtProc's reading of processingMode and
// buildProcessingMode's: a request (or response) section sends its headers,
// its body mode maps one to one, FullDuplexStreamed also sends trailers.
func egProcessingMode(cfg *extprocv3.ExternalProcessor, pm *egv1a1.ExtProcProcessingMode) error {
	if pm == nil {
		return nil
	}
	modes := map[egv1a1.ExtProcBodyProcessingMode]extprocv3.ProcessingMode_BodySendMode{
		egv1a1.BufferedExtProcBodyProcessingMode:          extprocv3.ProcessingMode_BUFFERED,
		egv1a1.BufferedPartialExtBodyHeaderProcessingMode: extprocv3.ProcessingMode_BUFFERED_PARTIAL,
		egv1a1.StreamedExtProcBodyProcessingMode:          extprocv3.ProcessingMode_STREAMED,
		egv1a1.FullDuplexStreamedExtBodyProcessingMode:    extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED,
	}
	m := cfg.ProcessingMode
	if rq := pm.Request; rq != nil {
		m.RequestHeaderMode = extprocv3.ProcessingMode_SEND
		if rq.Body != nil {
			m.RequestBodyMode = modes[*rq.Body]
			if m.RequestBodyMode == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED {
				m.RequestTrailerMode = extprocv3.ProcessingMode_SEND
			}
		}
		cfg.RequestAttributes = rq.Attributes
	}
	if rs := pm.Response; rs != nil {
		m.ResponseHeaderMode = extprocv3.ProcessingMode_SEND
		if rs.Body != nil {
			m.ResponseBodyMode = modes[*rs.Body]
		}
		cfg.ResponseAttributes = rs.Attributes
	}
	cfg.AllowModeOverride = pm.AllowModeOverride
	return nil
}

// egDynamicResolverOptions is the HttpProtocolOptions Envoy Gateway gives a
// DynamicResolver Backend's cluster (internal/xds/translator/cluster.go
// buildTypedExtensionProtocolOptions: "Envoy proxy requires AutoSNI and
// AutoSanValidation to be set to true for dynamic_forward_proxy clusters").
// Envoy's router then takes the SNI and the name the certificate must have
// from the request's host (router.cc Filter::decodeHeaders).
func egDynamicResolverOptions() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{
		UpstreamHttpProtocolOptions: &corev3.UpstreamHttpProtocolOptions{AutoSni: true, AutoSanValidation: true},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{}}},
	}
}

// validateMessage is go-control-plane's validation of m and of every Any in it.
func validateMessage(m interface {
	proto.Message
	ValidateAll() error
}, what string) error {
	return errors.Join(append([]error{m.ValidateAll()}, checkTree(m.ProtoReflect(), what)...)...)
}

var egChecks = []modeCheck{
	{[]string{modeEnvoyGateway}, namedCheck[*chartRender]{"envoy gateway: the emitted ext_proc fails closed and waits for credentials", func(r *chartRender) error {
		if len(r.eg.extPolicies) != 1 || len(r.eg.extPolicies[0].Spec.ExtProc) != 1 {
			return errors.New("want one EnvoyExtensionPolicy with one ext_proc")
		}
		f, rc, err := egExtProc(r.eg.extPolicies[0], 0)
		if err != nil {
			return err
		}
		// The route's FilterConfig carries an empty Any, which Envoy takes as
		// "enabled, no per-route config" (source/common/router/
		// per_filter_config.cc PerFilterConfigs): only its own rules apply.
		if err := errors.Join(validateMessage(f, "http_filter"), rc.ValidateAll()); err != nil {
			return fmt.Errorf("what Envoy Gateway emits does not validate: %w", err)
		}
		ep, err := unpack(f.GetTypedConfig(), &extprocv3.ExternalProcessor{})
		if err != nil {
			return err
		}
		root, err := parsedEnvoy(r.refs.rootEnvoy)
		if err != nil {
			return err
		}
		var p problems
		if ep.GetFailureModeAllow() || ep.GetObservabilityMode() {
			p.addf("failure_mode_allow or observability mode: an unsigned request would go upstream")
		}
		if got, want := ep.GetMessageTimeout().AsDuration(), root.extProc.GetMessageTimeout().AsDuration(); got < want {
			p.addf("message_timeout %v, shorter than envoy.yaml's %v: a cold credential fetch fails the request", got, want)
		}
		want := processingMode(extprocv3.ProcessingMode_BUFFERED)
		if !proto.Equal(ep.GetProcessingMode(), want) || !ep.GetAllowModeOverride() {
			p.addf("processing_mode %v (allow_mode_override %v), want %v with overrides allowed", ep.GetProcessingMode(), ep.GetAllowModeOverride(), want)
		}
		if ns := ep.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(); len(ns) != 1 || ns[0] != signerMetadataNamespace {
			p.addf("receiving namespaces %v, want [%s]", ns, signerMetadataNamespace)
		}
		// Without mutation_rules Envoy's defaults hold: the signer cannot
		// move :authority or host, so the request goes to the host the client
		// named, which is the one signed (the proxy form).
		if ep.GetMutationRules() != nil {
			p.addf("mutation_rules set: Envoy Gateway does not emit them (envoyproxy/gateway#6923)")
		}
		return p.err()
	}}},
	{[]string{modeEnvoyGateway}, namedCheck[*chartRender]{"envoy gateway: the policy covers the OCI route and reaches the signer", func(r *chartRender) error {
		var p problems
		if len(r.eg.routes) != 1 || len(r.eg.backends) != 1 || len(r.eg.extPolicies) != 1 {
			return fmt.Errorf("%d HTTPRoutes, %d Backends, %d EnvoyExtensionPolicies; want one each", len(r.eg.routes), len(r.eg.backends), len(r.eg.extPolicies))
		}
		rt, be, pol := r.eg.routes[0], r.eg.backends[0], r.eg.extPolicies[0]
		if t := pol.Spec.TargetRefs; len(t) != 1 || t[0].Kind != "HTTPRoute" || string(t[0].Name) != rt.Name {
			p.addf("the policy targets %v, want the HTTPRoute %s alone", t, rt.Name)
		}
		for _, h := range rt.Spec.Hostnames {
			host := strings.TrimPrefix(string(h), "*.")
			if !signer.IsRealmHost(host) && !signer.IsRealmHost("x."+host) {
				p.addf("route hostname %s is not an OCI domain: its requests would be signed and sent there", h)
			}
		}
		if len(rt.Spec.Hostnames) == 0 {
			p.addf("the route has no hostnames: it takes every host on the listener")
		}
		for _, rule := range rt.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if br.Kind == nil || *br.Kind != "Backend" || string(br.Name) != be.Name {
					p.addf("the route sends to %v, want the Backend %s", br.BackendObjectReference, be.Name)
				}
			}
		}
		svc := r.services
		for _, ref := range pol.Spec.ExtProc[0].BackendRefs {
			if len(svc) != 1 || string(ref.Name) != svc[0].Name || ref.Port == nil || *ref.Port != r.refs.signerPort {
				p.addf("ext_proc backend %s:%v is not the release's signer Service on %d", ref.Name, ref.Port, r.refs.signerPort)
			}
		}
		return p.err()
	}}},
	{[]string{modeEnvoyGateway}, namedCheck[*chartRender]{"envoy gateway: TLS to the host that was signed", func(r *chartRender) error {
		if len(r.eg.backends) != 1 {
			return fmt.Errorf("%d Backends", len(r.eg.backends))
		}
		be := r.eg.backends[0].Spec
		var p problems
		if be.Type == nil || *be.Type != egv1a1.BackendTypeDynamicResolver || len(be.Endpoints) != 0 {
			p.addf("Backend type %v: want DynamicResolver (the host of each request)", be.Type)
		}
		tls := be.TLS
		switch {
		case tls == nil:
			p.addf("the Backend has no TLS: signed requests would go out in clear")
		case tls.InsecureSkipVerify != nil && *tls.InsecureSkipVerify:
			p.addf("insecureSkipVerify: anyone on the path gets signed requests")
		case tls.SNI != nil:
			p.addf("a fixed SNI %s: the certificate would be checked for it, not for the request's host", *tls.SNI)
		case tls.WellKnownCACertificates == nil || *tls.WellKnownCACertificates != gwapiv1.WellKnownCACertificatesSystem:
			p.addf("the Backend's CAs are not the system's")
		}
		if err := validateMessage(egDynamicResolverOptions(), "dynamic resolver protocol options"); err != nil {
			p.addf("%v", err)
		}
		return p.err()
	}}},
	{[]string{modeEnvoyGateway}, namedCheck[*chartRender]{"envoy gateway: the route buffers what the signer signs", func(r *chartRender) error {
		if len(r.eg.trafficPolicies) != 1 || len(r.eg.routes) != 1 {
			return fmt.Errorf("%d BackendTrafficPolicies", len(r.eg.trafficPolicies))
		}
		bt := r.eg.trafficPolicies[0].Spec
		if t := bt.TargetRefs; len(t) != 1 || string(t[0].Name) != r.eg.routes[0].Name {
			return fmt.Errorf("the BackendTrafficPolicy targets %v, not the route", t)
		}
		if bt.RequestBuffer == nil || bt.RequestBuffer.Limit.Value() < maxSignedBody {
			return fmt.Errorf("request buffer %v: bodies the signer signs (up to %d) would get 413 at Envoy Gateway's 32 KiB", bt.RequestBuffer, maxSignedBody)
		}
		return nil
	}}},
}
