// Package envoyconfig reads Envoy bootstrap files as strictly as Envoy
// does where go-control-plane can tell (its protos and validation rules),
// and renders the repository's envoy.yaml for a test run: the same file a
// real Envoy and the Envoy stand-in then both take. Tests only.
package envoyconfig

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Extensions named only by a typed_config "@type" in the repository's
	// Envoy files: linked in so their Any resolves (an unresolvable Any
	// fails the load).
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_forward_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/internal_upstream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_mappers/sni/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_selectors/on_demand_secret/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Load decodes an Envoy bootstrap in YAML the strict way: YAML to JSON,
// protojson into the v3 Bootstrap with unknown fields rejected, Envoy's
// validation rules on the bootstrap and on every typed Any inside it, and no
// deprecated field or enum value anywhere.
func Load(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, bs); err != nil {
		return nil, fmt.Errorf("decode Bootstrap: %w", err)
	}
	if err := Check(bs); err != nil {
		return nil, err
	}
	return bs, nil
}

// Check validates a bootstrap as Load does.
func Check(bs *bootstrapv3.Bootstrap) error {
	if err := bs.ValidateAll(); err != nil {
		return fmt.Errorf("validate Bootstrap: %w", err)
	}
	return errors.Join(checkTree(bs.ProtoReflect(), "bootstrap")...)
}

// CheckTree checks every set field of m as Load does, below path (for
// messages that are not a whole bootstrap: a listener, a route
// configuration an Istio patch produced).
func CheckTree(m proto.Message, path string) []error { return checkTree(m.ProtoReflect(), path) }

type validatorAll interface{ ValidateAll() error }

// checkTree walks every set field of m. Each google.protobuf.Any is unpacked
// (its type must be linked in), validated with its own rules (the parent's
// ValidateAll does not look inside an Any) and walked in turn.
func checkTree(m protoreflect.Message, path string) []error {
	var errs []error
	if len(m.GetUnknown()) > 0 {
		errs = append(errs, fmt.Errorf("%s: unknown fields", path))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s: deprecated field %s", p, fd.FullName()))
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, checkValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", p, i))...)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, checkValue(fd.MapValue(), mv, fmt.Sprintf("%s[%s]", p, k.String()))...)
				return true
			})
		default:
			errs = append(errs, checkValue(fd, v, p)...)
		}
		return true
	})
	return errs
}

func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) []error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		if ev == nil {
			return []error{fmt.Errorf("%s: unknown %s value %d", path, fd.Enum().FullName(), v.Enum())}
		}
		if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
			return []error{fmt.Errorf("%s: deprecated enum value %s", path, ev.FullName())}
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		msg := v.Message()
		if msg.Descriptor().FullName() != "google.protobuf.Any" {
			return checkTree(msg, path)
		}
		a, ok := msg.Interface().(*anypb.Any)
		if !ok {
			return []error{fmt.Errorf("%s: Any of Go type %T", path, msg.Interface())}
		}
		if fd.FullName() == "envoy.config.route.v3.FilterConfig.config" && a.GetTypeUrl() == "" && len(a.GetValue()) == 0 {
			// "config: {}": Envoy's way to enable, on a route, a filter that
			// is disabled by default (per_filter_config.cc PerFilterConfigs:
			// "If the field `config` is configured but is empty, we treat
			// the filter is enabled explicitly").
			return nil
		}
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return []error{fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)}
		}
		p := fmt.Sprintf("%s<%s>", path, inner.ProtoReflect().Descriptor().FullName())
		vi, ok := inner.(validatorAll)
		if !ok {
			return []error{fmt.Errorf("%s: no validation rules linked for this type", p)}
		}
		var errs []error
		if err := vi.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
		return append(errs, checkTree(inner.ProtoReflect(), p)...)
	}
	return nil
}

// Equal reports whether a and b are the same configuration. proto.Equal
// compares a google.protobuf.Any by its bytes, and a message with a map
// inside an Any (a virtual host's typed_per_filter_config inside the
// connection manager's) serializes its entries in no fixed order: Equal
// compares the JSON forms, where every Any is unpacked and map keys are
// sorted.
func Equal(a, b proto.Message) bool {
	ja, errA := protojson.Marshal(a)
	jb, errB := protojson.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
