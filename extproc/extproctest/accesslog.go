package extproctest

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// AccessLogFormat is the text format of the stdout access log in ocisigner's envoy.yaml
// (deploy/envoy_test.go keeps the two equal): one line per request saying which host and
// path went out, which profile, principal and key signed it, the signer's outcome, where a
// Generative AI request's project came from, and OCI's answer; with a policy, the rule that
// decided and the caller (last: its label separates identities with spaces).
const AccessLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%` +
	` %DURATION%ms host=%REQ(:AUTHORITY)% upstream=%DYNAMIC_METADATA(ocisigner:upstream)%` +
	` profile=%DYNAMIC_METADATA(ocisigner:profile)% principal=%DYNAMIC_METADATA(ocisigner:principal)%` +
	` key_id=%DYNAMIC_METADATA(ocisigner:key_id)% outcome=%DYNAMIC_METADATA(ocisigner:outcome)%` +
	` project=%DYNAMIC_METADATA(ocisigner:project)%` +
	` opc-request-id=%RESP(OPC-REQUEST-ID)% rule=%DYNAMIC_METADATA(ocisigner:rule)%` +
	` caller=%DYNAMIC_METADATA(ocisigner:caller)%` + "\n"

// ErrAccessLogFormat is wrapped by FormatAccessLog for a format Envoy would refuse or the
// stand-in cannot render.
var ErrAccessLogFormat = errors.New("extproctest: access log format")

// accessLogCommand is one %COMMAND(params):length% of a format string
// (substitution_formatter.cc SubstitutionFormatParser).
var accessLogCommand = regexp.MustCompile(`%([A-Z_0-9]+)(?:\(([^)]*)\))?(?::([0-9]+))?%`)

// unspecified is what Envoy prints for a value that is not there (DefaultUnspecifiedValueString).
const unspecified = "-"

// FormatAccessLog renders e the way Envoy's text access log format renders a request
// (source/common/formatter), for the commands the stand-in knows: START_TIME (default
// format, UTC), REQ(H[?ALT]), RESP(H[?ALT]), DYNAMIC_METADATA(NS:KEY[:KEY...]),
// RESPONSE_CODE (0 without a response), RESPONSE_CODE_DETAILS, PROTOCOL, DURATION,
// UPSTREAM_HOST and ROUTE_NAME, each with an optional :length. A value that is not there
// prints "-"; a metadata string prints as is, other metadata values as JSON. Any other
// command is an error rather than a guess.
func FormatAccessLog(format string, e AccessLogEntry) (string, error) {
	var b strings.Builder
	last := 0
	for _, m := range accessLogCommand.FindAllStringSubmatchIndex(format, -1) {
		literal := format[last:m[0]]
		if strings.Contains(literal, "%") {
			return "", fmt.Errorf("%w: stray %% in %q", ErrAccessLogFormat, literal)
		}
		b.WriteString(literal)
		command := format[m[2]:m[3]]
		var params string
		if m[4] >= 0 {
			params = format[m[4]:m[5]]
		}
		maxLen := -1
		if m[6] >= 0 {
			maxLen, _ = strconv.Atoi(format[m[6]:m[7]])
		}
		v, ok, err := e.commandValue(command, params, m[4] >= 0)
		if err != nil {
			return "", err
		}
		if !ok {
			b.WriteString(unspecified)
		} else {
			if maxLen >= 0 && len(v) > maxLen {
				v = v[:maxLen]
			}
			b.WriteString(v)
		}
		last = m[1]
	}
	rest := format[last:]
	if strings.Contains(rest, "%") {
		return "", fmt.Errorf("%w: stray %% in %q", ErrAccessLogFormat, rest)
	}
	b.WriteString(rest)
	return b.String(), nil
}

func (e AccessLogEntry) commandValue(command, params string, hasParams bool) (string, bool, error) {
	noParams := func() error {
		if hasParams {
			return fmt.Errorf("%w: %s takes no parameters", ErrAccessLogFormat, command)
		}
		return nil
	}
	switch command {
	case "REQ", "RESP":
		h := e.RequestHeaders
		if command == "RESP" {
			h = e.ResponseHeaders
		}
		main, alt, _ := strings.Cut(params, "?")
		if main == "" || strings.Contains(alt, "?") {
			return "", false, fmt.Errorf("%w: %s(%s)", ErrAccessLogFormat, command, params)
		}
		if v, ok := headerFirst(h, main); ok {
			return v, true, nil
		}
		if alt != "" {
			if v, ok := headerFirst(h, alt); ok {
				return v, true, nil
			}
		}
		return "", false, nil
	case "DYNAMIC_METADATA":
		ns, keys, _ := strings.Cut(params, ":")
		if ns == "" {
			return "", false, fmt.Errorf("%w: DYNAMIC_METADATA needs a namespace", ErrAccessLogFormat)
		}
		s, ok := e.DynamicMetadata[ns]
		if !ok {
			return "", false, nil
		}
		v := structpb.NewStructValue(s)
		if keys != "" {
			for _, k := range strings.Split(keys, ":") {
				f, ok := v.GetStructValue().GetFields()[k]
				if !ok {
					return "", false, nil
				}
				v = f
			}
		}
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			return sv.StringValue, true, nil
		}
		js, err := protojson.Marshal(v)
		if err != nil {
			return "", false, fmt.Errorf("%w: DYNAMIC_METADATA(%s): %w", ErrAccessLogFormat, params, err)
		}
		return string(js), true, nil
	case "START_TIME":
		if hasParams {
			return "", false, fmt.Errorf("%w: START_TIME with a format is not rendered by the stand-in", ErrAccessLogFormat)
		}
		// The default start time format, %Y-%m-%dT%H:%M:%E3SZ in UTC.
		return e.StartTime.UTC().Format("2006-01-02T15:04:05.000Z"), true, nil
	case "RESPONSE_CODE":
		return strconv.Itoa(e.Status), true, noParams()
	case "RESPONSE_CODE_DETAILS":
		return e.ResponseCodeDetails, e.ResponseCodeDetails != "", noParams()
	case "PROTOCOL":
		return "HTTP/1.1", true, noParams()
	case "DURATION":
		return strconv.FormatInt(e.Duration.Milliseconds(), 10), true, noParams()
	case "UPSTREAM_HOST":
		return e.UpstreamHost, e.UpstreamHost != "", noParams()
	case "ROUTE_NAME":
		return e.RouteName, e.RouteName != "", noParams()
	}
	return "", false, fmt.Errorf("%w: %%%s%% is not rendered by the stand-in", ErrAccessLogFormat, command)
}

// headerFirst is the first value of a header; pseudo-headers are stored as they are.
func headerFirst(h http.Header, name string) (string, bool) {
	key := strings.ToLower(name)
	if !strings.HasPrefix(key, ":") {
		key = http.CanonicalHeaderKey(key)
	}
	vs := h[key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// headerMapForLog turns a header map into the form AccessLogEntry exposes.
func headerMapForLog(h *headerList) http.Header {
	out := http.Header{}
	if h == nil {
		return out
	}
	for _, kv := range h.kv {
		key := kv.key
		if !strings.HasPrefix(key, ":") {
			key = http.CanonicalHeaderKey(key)
		}
		out[key] = append(out[key], kv.value)
	}
	return out
}
