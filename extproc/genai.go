package extproc

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"

	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer"
)

// OCI Generative AI. Its OpenAI-compatible API lives under /openai/v1 on the
// inference host (inference.generativeai.<region>.oci.<domain>), under
// /20231130/actions/v1 there too (oci-openai 0.x), and, for vector stores,
// under /20231130/openai/v1 on the control plane
// (generativeai.<region>.oci.<domain>). What Oracle's own client helpers put
// on such requests, and what ocisigner puts there for a client that was
// written for api.openai.com and sends none of it:
//
//   - the compartment: oci-genai-auth's Python OciOpenAI._build_headers and
//     Java OciHeaderInterceptor send CompartmentId "for backward
//     compatibility" beside opc-compartment-id, with one value, wherever they
//     send a compartment (their base URL is the inference host's); oci-openai
//     0.x sent CompartmentId alone to /20231130/actions/v1. Oracle's control
//     plane example (oci-genai-auth-python examples/agenthub/openai/common.py,
//     build_agenthub_cp_client) sends opc-compartment-id alone. So: both
//     spellings on the inference host's OpenAI-compatible paths, the new one
//     alone elsewhere on the inference host (the native API, as before) and
//     on the control plane's /20231130/openai/v1; nothing on the control
//     plane's native API, which takes its compartment as a parameter.
//   - the project (openai-project; the OpenAI SDKs send OpenAI-Project,
//     header names are case-insensitive): required on /openai/v1 by Oracle's
//     migration guides (oci-genai-auth MIGRATION.md, Python and Java), set
//     by the user's code, never by the helpers. ocisigner adds the route's
//     or the operator's to /openai/v1 requests on either host that have
//     none, and keeps a client's; with none of the three the request goes
//     on as it is and OCI decides, and the access log says so
//     (ProjectNone).
//   - opc-conversation-store-id (Python conversation_store_id, Java
//     OciOpenAI.conversationStoreId): passed as sent.
//
// Every one of these a client sends is hostile input: sent once, not empty,
// printable ASCII without spaces (OCIDs are), and bounded, or the request
// is refused before it is signed.
const (
	headerCompartmentLegacy = "compartmentid"
	headerProject           = "openai-project"
	headerConversationStore = "opc-conversation-store-id"
	// maxGenAIValue bounds what a client may put in one of these headers:
	// an OCID is at most 255 bytes.
	maxGenAIValue = 255
)

// DefaultProjectKey is the gRPC metadata key with which a route names the
// Generative AI project of its requests (like DefaultCompartmentKey).
const DefaultProjectKey = "x-oci-genai-project"

// genaiClientHeaders are the Generative AI headers ocisigner checks.
var genaiClientHeaders = [...]string{headerCompartment, headerCompartmentLegacy, headerProject, headerConversationStore}

// Where a request's project came from, in the dynamic metadata (field
// "project") and so in the access log.
const (
	ProjectFromRule   = "rule" // the shared gateway's policy (caller.go)
	ProjectFromClient = "client"
	ProjectFromRoute  = "route"
	ProjectFromFlag   = "flag"
)

// projectNone is the metadata's project of an /openai/v1 request that went
// out without one: it says so, and how to set one, in one word.
func (s *Server) projectNone() string {
	return projectNonePrefix + "(route:" + s.cfg.ProjectKey + ",flag:--genai-project,header:OpenAI-Project)"
}

const projectNonePrefix = "none"

// The planes of Generative AI, by host.
const (
	planeInference = "inference"
	planeControl   = "control"
)

// genaiPlane is the Generative AI plane host belongs to, or "".
func genaiPlane(host string) string {
	switch {
	case isGenAIInference(host):
		return planeInference
	case strings.HasPrefix(strings.ToLower(host), "generativeai."):
		return planeControl
	}
	return ""
}

// underBase reports target at or under base, as a path.
func underBase(target, base string) bool {
	rest, ok := strings.CutPrefix(target, base)
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

// genaiPaths classifies a target on a plane: under the OpenAI-compatible
// base that takes a project, and under one where Oracle's helpers send
// both compartment spellings.
func genaiPaths(plane, target string) (openai, bothSpellings bool) {
	switch plane {
	case planeInference:
		openai = underBase(target, "/openai/v1")
		return openai, openai || underBase(target, "/20231130/actions/v1")
	case planeControl:
		return underBase(target, "/20231130/openai/v1"), false
	}
	return false, false
}

// genaiHeaders is what a Generative AI request gets before it is signed:
// the checks of the client's own headers, then the project and the
// compartment it lacks. With a policy, the deciding rule's compartment and
// project replace the client's: a caller cannot bill another compartment
// by sending its own header. It returns nil for any other request.
func (s *Server) genaiHeaders(ctx context.Context, st *stream, creds *signer.Credentials) (*extprocv3.HeaderMutation, *refusal) {
	h := &st.h
	plane := genaiPlane(h.authority)
	if plane == "" {
		return nil, nil
	}
	if r := checkGenAIHeaders(h); r != nil {
		return nil, r
	}
	mut := &extprocv3.HeaderMutation{}
	openai, both := genaiPaths(plane, h.path)
	rule, enforced := st.Grant()
	if !enforced {
		rule = policy.Decision{}
	}
	project := ""
	if openai {
		var source string
		var r *refusal
		if project, source, r = s.projectFor(ctx, h, rule.Project); r != nil {
			return nil, r
		}
		st.project = source
		if source != ProjectFromClient && project != "" {
			mut.SetHeaders = append(mut.SetHeaders, setHeader(headerProject, project))
		}
	} else if rule.Project != "" && h.has(headerProject) {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(headerProject, rule.Project))
	}
	if rule.Compartment != "" {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartment, rule.Compartment))
		if both || h.has(headerCompartmentLegacy) {
			mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartmentLegacy, rule.Compartment))
		}
		return mut, nil
	}
	if plane == planeControl && !openai {
		return mut, nil
	}
	cur, hasCur := h.Get(headerCompartment)
	legacy, hasLegacy := h.Get(headerCompartmentLegacy)
	switch {
	case hasCur && hasLegacy:
	case hasCur && both:
		mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartmentLegacy, cur))
	case hasCur:
	case hasLegacy:
		// The client's own compartment, in the spelling OCI reads first.
		mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartment, legacy))
	default:
		c, r := s.compartmentFor(ctx, creds)
		if r != nil && openai && project != "" {
			return mut, nil // the project names where the request belongs
		}
		if r != nil {
			return nil, r
		}
		mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartment, c))
		if both {
			mut.SetHeaders = append(mut.SetHeaders, setHeader(headerCompartmentLegacy, c))
		}
	}
	return mut, nil
}

// projectFor is the project of an /openai/v1 request: the policy rule's,
// else the client's, else the route's, else the operator's; "" when none
// of them names one.
func (s *Server) projectFor(ctx context.Context, h *requestHeaders, rule string) (project, source string, r *refusal) {
	if rule != "" {
		return rule, ProjectFromRule, nil
	}
	if v, ok := h.Get(headerProject); ok {
		return v, ProjectFromClient, nil
	}
	if v := metadata.ValueFromIncomingContext(ctx, s.cfg.ProjectKey); len(v) > 0 && v[0] != "" {
		if err := signer.CheckOCID(v[0], "generativeaiproject"); err != nil {
			return "", "", refuse(http.StatusInternalServerError, CodeMisconfigured, "the route's "+s.cfg.ProjectKey+": "+err.Error())
		}
		return v[0], ProjectFromRoute, nil
	}
	if s.cfg.GenAIProject != "" {
		return s.cfg.GenAIProject, ProjectFromFlag, nil
	}
	return "", s.projectNone(), nil
}

// checkGenAIHeaders refuses Generative AI headers a client sent that OCI
// could read more than one way: twice, empty, with a byte that is not
// printable ASCII (CR and LF included) or a space, longer than an OCID, or
// the two compartment spellings disagreeing.
func checkGenAIHeaders(h *requestHeaders) *refusal {
	for _, name := range genaiClientHeaders {
		switch n := h.count(name); {
		case n > 1:
			return refuse(http.StatusBadRequest, CodeInvalidHeader, fmt.Sprintf("the request carries %s %d times; send it once", name, n))
		case n == 0:
			continue
		}
		v, _ := h.Get(name)
		if why := badGenAIValue(v); why != "" {
			return refuse(http.StatusBadRequest, CodeInvalidHeader, fmt.Sprintf("the %s header %s; send the OCID alone", name, why))
		}
	}
	cur, ok1 := h.Get(headerCompartment)
	legacy, ok2 := h.Get(headerCompartmentLegacy)
	if ok1 && ok2 && cur != legacy {
		return refuse(http.StatusBadRequest, CodeInvalidHeader, fmt.Sprintf(
			"opc-compartment-id %q and CompartmentId %q name different compartments; send one, or the same in both", capEcho(cur), capEcho(legacy)))
	}
	return nil
}

// badGenAIValue says what is wrong with a header value, or "".
func badGenAIValue(v string) string {
	if v == "" {
		return "is empty"
	}
	if len(v) > maxGenAIValue {
		return fmt.Sprintf("is %d bytes, longer than any OCID (%d)", len(v), maxGenAIValue)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' {
			return fmt.Sprintf("holds byte 0x%02x at %d, which no OCID has", c, i)
		}
	}
	return ""
}
