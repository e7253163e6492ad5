package signer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// An Alias names an OCI service by a short word, so that a client can
// address it as http://gateway/<alias>/<path> and leave the region and realm
// to the profile: genai in eu-frankfurt-2 is
// inference.generativeai.eu-frankfurt-2.oci.oraclecloud.eu.
//
// Template is a host name with two placeholders, {region} (Region.ID) and
// {domain} (Region.Domain, the realm's second-level domain). The built-in
// templates are those of oci-go-sdk's clients (each client's SetRegion calls
// common.StringToRegion(region).EndpointForTemplate[DottedRegion] with them;
// the SDK's {secondLevelDomain} is our {domain}), in the form the SDK sends
// by default: its {dualStack?...} options resolved to IPv4 endpoints and
// Object Storage's opt-in per-realm customer-oci.com template not used.
// endpoints_test.go holds every entry to the SDK source it names.
//
// Prefix, when set, is a fixed path that goes before the client's path, so
// that an alias can name a base URL rather than a host: genai-actions/v1 is
// https://inference.generativeai.<region>.oci.<domain>/20231130/actions/v1.
// It is part of the request target, and so of what is signed, byte for byte
// (Target). It is a convenience, not a confinement: the host is what the
// signer's policy judges, and any path on it is reachable through the
// host-only alias of the same host.
//
// A host rendered from an alias is still subject to the signer's host
// allowlist: an operator alias to a host outside the realm domains signs
// nothing unless that host is also allowed.
type Alias struct {
	Name     string // lower-case letters, digits and hyphens: genai
	Template string // inference.generativeai.{region}.oci.{domain}
	// Prefix is "" or an absolute path without a trailing slash, its
	// segments letters, digits, '-', '.' and '_' (no dot segments, no
	// percent-encoding): /20231130/actions.
	Prefix string
	// Service says what the endpoint serves and which oci-go-sdk package
	// the template comes from; "operator-defined" for ParseAlias's.
	Service string
}

// ErrInvalidAlias is returned (wrapped) by ParseAlias for a spec it refuses,
// and by Alias.Host when the region cannot be rendered into a host name.
var ErrInvalidAlias = errors.New("invalid endpoint alias")

// Placeholders a template may hold.
const (
	PlaceholderRegion = "{region}"
	PlaceholderDomain = "{domain}"
)

// aliases is sorted by name. Only services whose host is fixed per region
// belong here: endpoints that are per resource (KMS keys and crypto, a
// function's invoke endpoint, a stream pool's messages endpoint) cannot be
// derived from a region.
var aliases = []Alias{
	{"audit", "audit.{region}.{domain}", "", "Audit events (oci-go-sdk audit)"},
	{"containerengine", "containerengine.{region}.oci.{domain}", "", "Container Engine for Kubernetes, OKE (containerengine)"},
	{"core", "iaas.{region}.{domain}", "", "Core Services: compute, virtual network, block storage; load balancer and work requests share the host (core)"},
	{"database", "database.{region}.{domain}", "", "Database (database)"},
	{"functions", "functions.{region}.oci.{domain}", "", "Functions management; invoking a function uses its own endpoint (functions)"},
	{"genai", "inference.generativeai.{region}.oci.{domain}", "", "Generative AI inference host, any path: native chat, embed, rerank under /20231130/actions/..., OpenAI SDK base URL /genai/openai/v1 (generativeaiinference)"},
	{"genai-actions", "inference.generativeai.{region}.oci.{domain}", "/20231130/actions", "Generative AI inference, OpenAI-compatible API on the native actions path, as oci-openai 0.x used it: OpenAI SDK base URL /genai-actions/v1 (generativeaiinference; /20231130 is its BasePath, /actions its operations' path)"},
	{"genai-agent", "agent-runtime.generativeai.{region}.oci.{domain}", "", "Generative AI Agents runtime: sessions and chat with agent endpoints (generativeaiagentruntime)"},
	{"genai-control", "generativeai.{region}.oci.{domain}", "/20231130/openai", "Generative AI control plane, OpenAI-compatible API: vector stores; OpenAI SDK base URL /genai-control/v1 (generativeai; /20231130 is its BasePath)"},
	{"genai-openai", "inference.generativeai.{region}.oci.{domain}", "/openai", "Generative AI inference, OpenAI-compatible API: Responses, Chat Completions, Files, Conversations; OpenAI SDK base URL /genai-openai/v1 (generativeaiinference host; the path is OCI's, not in the SDK)"},
	{"generativeai", "generativeai.{region}.oci.{domain}", "", "Generative AI management (control plane), any path: models, endpoints, dedicated AI clusters, projects (generativeai)"},
	{"identity", "identity.{region}.oci.{domain}", "", "Identity and Access Management (identity)"},
	{"kms", "kms.{region}.{domain}", "", "Key Management vaults; keys and crypto use each vault's own endpoints (keymanagement KmsVaultClient)"},
	{"logging", "logging.{region}.oci.{domain}", "", "Logging management and log search (logging, loggingsearch)"},
	{"loggingingestion", "ingestion.logging.{region}.oci.{domain}", "", "Logging ingestion (loggingingestion)"},
	{"monitoring", "telemetry.{region}.{domain}", "", "Monitoring metrics queries and alarms; PostMetricData goes to telemetry-ingestion, for which the SDK has no template (monitoring)"},
	{"objectstorage", "objectstorage.{region}.{domain}", "", "Object Storage (objectstorage)"},
	{"resourcesearch", "query.{region}.oci.{domain}", "", "Resource Search (resourcesearch)"},
	{"secrets", "secrets.vaults.{region}.oci.{domain}", "", "Vault secret retrieval (secrets)"},
	{"usageapi", "usageapi.{region}.oci.{domain}", "", "Usage and cost reports (usageapi)"},
	{"vault", "vaults.{region}.oci.{domain}", "", "Vault secret management (vault)"},
}

// Aliases returns the built-in aliases, sorted by name.
func Aliases() []Alias { return slices.Clone(aliases) }

// LookupAlias returns the built-in alias called name.
func LookupAlias(name string) (Alias, bool) {
	i, ok := slices.BinarySearchFunc(aliases, name, func(a Alias, n string) int { return strings.Compare(a.Name, n) })
	if !ok {
		return Alias{}, false
	}
	return aliases[i], true
}

// ParseAlias reads an operator's NAME=TEMPLATE[PREFIX] (the --alias flag),
// such as myai=inference.generativeai.{region}.oci.{domain} or
// myactions=inference.generativeai.{region}.oci.{domain}/20231130/actions.
// NAME is lower-case letters, digits and hyphens; TEMPLATE is a host name in
// which {region} and {domain} may appear, with no scheme, port, query or
// fragment; PREFIX, optional, is a fixed path as Alias.Prefix describes,
// without placeholders. The template is lower-cased, as host names are
// case-insensitive; the prefix is kept as written, as paths are not. It does
// not check the name against the built-in aliases: whether an operator may
// redefine one is the caller's decision.
func ParseAlias(spec string) (Alias, error) {
	spec = strings.TrimSpace(spec)
	name, tmpl, ok := strings.Cut(spec, "=")
	if !ok {
		return Alias{}, fmt.Errorf("%w: %q is not NAME=TEMPLATE (for example myai=inference.generativeai.{region}.oci.{domain})", ErrInvalidAlias, spec)
	}
	if err := checkAliasName(name); err != nil {
		return Alias{}, fmt.Errorf("%w: %q: %w", ErrInvalidAlias, spec, err)
	}
	if strings.Contains(tmpl, "://") {
		return Alias{}, fmt.Errorf("%w: %q: the template is a host name, without a scheme (drop the https://)", ErrInvalidAlias, spec)
	}
	host, prefix := tmpl, ""
	if i := strings.IndexByte(tmpl, '/'); i >= 0 {
		host, prefix = tmpl[:i], tmpl[i:]
	}
	if err := checkAliasTemplate(host); err != nil {
		return Alias{}, fmt.Errorf("%w: %q: %w", ErrInvalidAlias, spec, err)
	}
	if err := checkAliasPrefix(prefix); err != nil {
		return Alias{}, fmt.Errorf("%w: %q: %w", ErrInvalidAlias, spec, err)
	}
	return Alias{Name: name, Template: strings.ToLower(host), Prefix: prefix, Service: "operator-defined"}, nil
}

// String is the alias as ParseAlias reads it: NAME=TEMPLATE[PREFIX].
func (a Alias) String() string { return a.Name + "=" + a.Template + a.Prefix }

// Target is the request target that goes upstream, and is signed, for rest,
// the client's target after the alias segment (path and query, byte for
// byte): the prefix, then rest. A rest that does not start with '/' (empty,
// or a bare query) gets one, so that it cannot run into the prefix's last
// segment.
func (a Alias) Target(rest string) string {
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	return a.Prefix + rest
}

// Host renders the alias for a region: r.ID for {region}, r.Domain for
// {domain}. ParseRegion made r, so its ID is one DNS label; Host checks
// again, since a Region can also be written as a literal, so that a bad
// region can never steer a request to another host.
func (a Alias) Host(r Region) (string, error) {
	if err := checkLabel(r.ID); err != nil {
		return "", fmt.Errorf("%w: alias %s: region %q is not a region identifier: %w", ErrInvalidAlias, a.Name, r.ID, err)
	}
	host := renderAlias(a.Template, r.ID, r.Domain)
	if err := checkAliasHost(host); err != nil {
		return "", fmt.Errorf("%w: alias %s renders %q for region %s: %w", ErrInvalidAlias, a.Name, host, r.ID, err)
	}
	return host, nil
}

func renderAlias(tmpl, region, domain string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tmpl, PlaceholderRegion, region), PlaceholderDomain, domain)
}

func checkAliasName(name string) error {
	if name == "" {
		return errors.New("the name is empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("the name is %d characters long; at most 63", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("the name %q may hold only lower-case letters, digits and hyphens", name)
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("the name %q may not start or end with a hyphen", name)
	}
	return nil
}

// checkAliasTemplate refuses, in the host part of a template, placeholders
// other than the two, and anything that would not render to a bare host
// name (a query, a port, user information, empty labels). Placeholders are matched as written ({Region} is not one); the
// host is checked lower-cased, as ParseAlias keeps it. The probe region stands for any region: every region identifier
// is a single label, and every realm domain is a valid domain.
func checkAliasTemplate(tmpl string) error {
	if tmpl == "" {
		return errors.New("the template is empty")
	}
	for rest := tmpl; ; {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			break
		}
		if rest[i] == '}' {
			return errors.New("the template has a '}' that closes no placeholder")
		}
		switch {
		case strings.HasPrefix(rest[i:], PlaceholderRegion):
			rest = rest[i+len(PlaceholderRegion):]
		case strings.HasPrefix(rest[i:], PlaceholderDomain):
			rest = rest[i+len(PlaceholderDomain):]
		default:
			end := strings.IndexByte(rest[i:], '}')
			if end < 0 {
				return errors.New("the template has a '{' that opens no placeholder")
			}
			return fmt.Errorf("the template has placeholder %s; only {region} and {domain} are known", rest[i:i+end+1])
		}
	}
	switch {
	case strings.ContainsAny(tmpl, "?#"):
		return errQueryInTemplate
	case strings.Contains(tmpl, ":"):
		return errors.New("the template is a host name, without a port (the gateway speaks HTTPS on 443)")
	case strings.Contains(tmpl, "@"):
		return errors.New("the template is a host name, without user information")
	}
	return checkAliasHost(strings.ToLower(renderAlias(tmpl, "us-ashburn-1", "oraclecloud.com")))
}

// checkAliasHost accepts a host name (checkHostName) of at least two labels
// whose last label is not numeric, which leaves out IPv4 literals.
func checkAliasHost(host string) error {
	if err := checkHostName(host); err != nil {
		return fmt.Errorf("host %q: %w", host, err)
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified host name", host)
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("%q is an IP address, not a host name", host)
	}
	return nil
}

var errQueryInTemplate = errors.New("the template is a host name and an optional path prefix, without a query or fragment (those come from the request)")

// Limits of an alias's path prefix: OCI's are two segments of a few
// characters; these leave room without letting a prefix carry a payload.
const (
	maxAliasPrefixLen      = 128
	maxAliasPrefixSegments = 8
)

// checkAliasPrefix accepts "" or an absolute path of 1 to
// maxAliasPrefixSegments segments, each 1 to 63 letters, digits, '-', '.'
// and '_', none "." or "..", and no trailing slash: nothing that a proxy
// or OCI could read as anything but these segments (no percent-encoding,
// no parameters, no placeholders).
func checkAliasPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > maxAliasPrefixLen {
		return fmt.Errorf("the path prefix is %d characters long; at most %d", len(prefix), maxAliasPrefixLen)
	}
	if strings.ContainsAny(prefix, "?#") {
		return errQueryInTemplate
	}
	if strings.ContainsAny(prefix, "{}") {
		return fmt.Errorf("the path prefix %q holds a placeholder; {region} and {domain} belong in the host", prefix)
	}
	segs := strings.Split(prefix[1:], "/")
	if len(segs) > maxAliasPrefixSegments {
		return fmt.Errorf("the path prefix %q has %d segments; at most %d", prefix, len(segs), maxAliasPrefixSegments)
	}
	for _, seg := range segs {
		switch {
		case seg == "":
			return fmt.Errorf("the path prefix %q has an empty segment (two slashes in a row, or a slash at the end)", prefix)
		case seg == "." || seg == "..":
			return fmt.Errorf("the path prefix %q has a %q segment", prefix, seg)
		case len(seg) > maxLabelLen:
			return fmt.Errorf("the path prefix segment %q is longer than %d characters", seg, maxLabelLen)
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
				return fmt.Errorf("the path prefix segment %q may hold only letters, digits, '-', '.' and '_', not %s", seg, describeByte(c))
			}
		}
	}
	return nil
}
