package extproctest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// This file is source/extensions/filters/common/mutation_rules/mutation_rules.cc (which
// header changes a processor may make) and the header and body parts of
// source/extensions/filters/http/ext_proc/mutation_utils.cc (how they are applied).

type checkOp int

const (
	opSet checkOp = iota
	opAppend
	opRemove
)

type checkResult int

const (
	checkOK checkResult = iota
	checkIgnore
	checkFail
)

// checker is Filters::Common::MutationRules::Checker.
type checker struct {
	allowAllRouting, allowEnvoy, disallowSystem, disallowAll, disallowIsError bool
	allowRe, disallowRe                                                       *regexp.Regexp
}

// routingHeaders are Checker's "extra routing headers": not changeable unless
// allow_all_routing. :path is not among them, so a processor may rewrite it.
var routingHeaders = map[string]bool{"host": true, ":authority": true, ":method": true, ":scheme": true}

func newChecker(rules *mutationrulesv3.HeaderMutationRules, disallowIsError bool) (*checker, error) {
	c := &checker{
		allowAllRouting: rules.GetAllowAllRouting().GetValue(),
		allowEnvoy:      rules.GetAllowEnvoy().GetValue(),
		disallowSystem:  rules.GetDisallowSystem().GetValue(),
		disallowAll:     rules.GetDisallowAll().GetValue(),
		disallowIsError: rules.GetDisallowIsError().GetValue() || disallowIsError,
	}
	var err error
	// Envoy's regex matchers match the whole string.
	if re := rules.GetAllowExpression().GetRegex(); re != "" {
		if c.allowRe, err = regexp.Compile(`^(?:` + re + `)$`); err != nil {
			return nil, fmt.Errorf("%w: allow_expression: %w", ErrConfig, err)
		}
	}
	if re := rules.GetDisallowExpression().GetRegex(); re != "" {
		if c.disallowRe, err = regexp.Compile(`^(?:` + re + `)$`); err != nil {
			return nil, fmt.Errorf("%w: disallow_expression: %w", ErrConfig, err)
		}
	}
	return c, nil
}

func (c *checker) check(op checkOp, name, value string) checkResult {
	if c.isAllowed(op, name) && (op == opRemove || isValidValue(name, value)) {
		return checkOK
	}
	if c.disallowIsError {
		return checkFail
	}
	return checkIgnore
}

func (c *checker) isAllowed(op checkOp, name string) bool {
	if op == opRemove && (strings.HasPrefix(name, ":") || name == "host") {
		return false // HeaderUtility::isModifiableHeader: never removable
	}
	if c.disallowRe != nil && c.disallowRe.MatchString(name) {
		return false
	}
	if c.allowRe != nil && c.allowRe.MatchString(name) {
		return true
	}
	if c.disallowAll {
		return false
	}
	if !c.allowAllRouting && routingHeaders[name] {
		return false
	}
	if strings.HasPrefix(name, ":") && (op == opAppend || c.disallowSystem) {
		return false
	}
	if !c.allowEnvoy && strings.HasPrefix(name, "x-envoy") {
		return false
	}
	return true
}

func isValidValue(name, value string) bool {
	if !strings.HasPrefix(name, ":") && !headerValueIsValid(value) {
		return false
	}
	switch name {
	case "host", ":authority":
		return authorityIsValid(value)
	case ":scheme":
		return strings.EqualFold(value, "http") || strings.EqualFold(value, "https")
	case ":status":
		n, err := strconv.ParseUint(value, 10, 32)
		return err == nil && n >= 200
	}
	return true
}

// authorityIsValid is oghttp2's IsValidAuthority: unreserved, sub-delims, ':', '@', '[',
// ']' and '%' only.
func authorityIsValid(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// mutationError is a failed mutation. Envoy turns it into a local reply with
// status_on_error and the message as response code details.
type mutationError struct{ msg string }

func (e *mutationError) Error() string { return e.msg }

func errMutation(format string, args ...any) error {
	return &mutationError{msg: fmt.Sprintf(format, args...)}
}

// applyHeaderMutations is MutationUtils::applyHeaderMutations. Invalid names or values and
// "both value and raw_value" are errors whatever disallow_is_error says; a change the rules
// refuse is skipped (and counted) unless disallow_is_error. A header whose HeaderValue has
// value but no raw_value is set to the empty string: Envoy reads raw_value only.
func applyHeaderMutations(m *extprocv3.HeaderMutation, h *headerList, replacing bool, c *checker,
	skipContentLength bool, rejected *atomic.Int64) error {
	if len(m.GetRemoveHeaders()) > maxHeadersCount || len(m.GetSetHeaders()) > maxHeadersCount {
		rejected.Add(1)
		return errMutation("Header mutation remove header count %d or set header count %d exceed the HCM header countlimit %d",
			len(m.GetRemoveHeaders()), len(m.GetSetHeaders()), maxHeadersCount)
	}
	for _, name := range m.GetRemoveHeaders() {
		if !headerNameIsValid(name) {
			rejected.Add(1)
			return errMutation("Invalid character in remove_headers mutation.")
		}
		key := strings.ToLower(name)
		switch c.check(opRemove, key, "") {
		case checkOK:
			h.remove(key)
		case checkIgnore:
			rejected.Add(1)
		case checkFail:
			rejected.Add(1)
			return errMutation("Invalid attempt to remove %s", key)
		}
	}
	for _, sh := range m.GetSetHeaders() {
		hv := sh.GetHeader()
		if hv == nil {
			continue
		}
		if skipContentLength && strings.EqualFold(hv.GetKey(), "content-length") {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			rejected.Add(1)
			return errMutation("Only one of value or raw_value in the HeaderValue message should be set.")
		}
		value := string(hv.GetRawValue())
		if !headerNameIsValid(hv.GetKey()) || !headerValueIsValid(value) {
			rejected.Add(1)
			return errMutation("Invalid character in set_headers mutation.")
		}
		key := strings.ToLower(hv.GetKey())
		//lint:ignore SA1019 ext_proc reads the deprecated append, not append_action (mutation_utils.cc applyHeaderMutations).
		appendIt := sh.GetAppend().GetValue()
		op := opSet
		if appendIt && h.has(key) {
			op = opAppend
		}
		res := c.check(op, key, value)
		if replacing && key == ":method" {
			res = checkOK // CONTINUE_AND_REPLACE may change the method
		}
		switch res {
		case checkOK:
			if appendIt {
				h.add(key, value)
			} else {
				h.set(key, value)
			}
		case checkIgnore:
			rejected.Add(1)
		case checkFail:
			rejected.Add(1)
			return errMutation("Invalid attempt to modify %s", key)
		}
	}
	if h.byteSize() > maxHeadersBytes || len(h.kv) > maxHeadersCount {
		rejected.Add(1)
		return errMutation("Header mutation causes end result header count %d or header size %d bytes, exceeding the count limit %d or the size limit %d kilobytes",
			len(h.kv), h.byteSize(), maxHeadersCount, maxHeadersBytes>>10)
	}
	return nil
}

// applyBodyMutation is MutationUtils::applyBodyMutations on a buffered body: body replaces,
// clear_body empties, anything else (streamed_response, clear_body false) leaves it.
func applyBodyMutation(m *extprocv3.BodyMutation, body []byte) []byte {
	switch mm := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return append([]byte(nil), mm.Body...)
	case *extprocv3.BodyMutation_ClearBody:
		if mm.ClearBody {
			return nil
		}
	}
	return body
}
