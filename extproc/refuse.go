package extproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"net/http"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/ocisigner/ocisigner/signer"
)

// Codes in the JSON body of a refusal. They are ocisigner's own, in OCI's
// error shape, so clients that parse OCI errors show them as they are.
const (
	CodeHostNotAllowed     = "HostNotAllowed"
	CodeInvalidHost        = "InvalidHost"
	CodePathTooLong        = "PathTooLong"
	CodeHeadersTooLarge    = "HeadersTooLarge"
	CodeDuplicateHeader    = "DuplicateSignedHeader"
	CodeUnknownProfile     = "UnknownProfile"
	CodeProfileNotServed   = "ProfileNotAllowed"
	CodeCredentialsExpired = "CredentialsExpired"
	CodeCredentialsInvalid = "CredentialsUnusable"
	CodeBodyTooLarge       = "PayloadTooLarge"
	CodeMisconfigured      = "EnvoyMisconfigured"
	CodeInternal           = "InternalError"
	CodeGatewayPath        = "InvalidGatewayPath"
	CodeMisdirected        = "MisdirectedRequest"
	CodeNoCompartment      = "CompartmentMissing"
	CodeInvalidHeader      = "InvalidHeader"
)

// Codes lists every refusal code, so that metrics can keep outcome labels
// to a closed set.
var Codes = []string{CodeHostNotAllowed, CodeInvalidHost, CodeGatewayPath, CodePathTooLong, CodeHeadersTooLarge, CodeDuplicateHeader,
	CodeUnknownProfile, CodeProfileNotServed, CodeCredentialsExpired, CodeCredentialsInvalid, CodeBodyTooLarge, CodeMisconfigured, CodeInternal,
	CodeMisdirected, CodeNoCompartment, CodeInvalidHeader, CodeCredentialMinting}

// HeaderRefused marks a reply that ocisigner, not OCI, produced.
const HeaderRefused = "x-ocisigner-refused"

// Caps on text that ends up in replies and logs.
const (
	maxEcho    = 256     // a value a client chose, quoted back
	maxMessage = 4 << 10 // a whole refusal message
)

// refusal is a request ocisigner will not sign: it becomes an
// ImmediateResponse, because ending the stream any other way could let
// Envoy forward the request unsigned.
type refusal struct {
	status  int
	code    string
	message string // for the client
	err     error  // the whole story, for the log only
}

func refuse(status int, code, message string) *refusal {
	return &refusal{status: status, code: code, message: text.CutCounted(message, maxMessage)}
}

// within puts what the client asked for in front of a refusal of what it
// led to ("the alias genai resolves to ...: ...").
func (r *refusal) within(context string) *refusal {
	r.message = text.CutCounted(context+": "+r.message, maxMessage)
	return r
}

// capEcho shortens a client-chosen value before it is quoted anywhere: a
// 100 KB header must not come back three times in a refusal or fill a log.
func capEcho(s string) string { return text.CutCounted(s, maxEcho) }

// credentialRefusal maps a credential error to the status a client can act
// on. The message names the profile and what to do; the file paths and the
// config's other profiles stay in the log unless the operator disclosed them.
func (s *Server) credentialRefusal(profile string, err error) *refusal {
	profile = capEcho(profile)
	r := &refusal{err: err}
	var se *signer.Error
	isSigner := errors.As(err, &se)
	switch {
	case errors.Is(err, signer.ErrProfileNotFound):
		r.status, r.code = http.StatusBadRequest, CodeUnknownProfile
		r.message = fmt.Sprintf("profile %q is not one this gateway signs for; check the name, or ask its operator which profiles it serves", profile)
	case errors.Is(err, signer.ErrTokenExpired) && isSigner:
		r.status, r.code = http.StatusUnauthorized, CodeCredentialsExpired
		r.message = se.Public()
	case isSigner:
		r.status, r.code = http.StatusUnauthorized, CodeCredentialsInvalid
		r.message = se.Public()
	default:
		r.status, r.code = http.StatusInternalServerError, CodeInternal
		r.message = "profile " + profile + ": cannot get credentials; the gateway's log says why"
	}
	if s.cfg.DiscloseErrors {
		r.message = err.Error()
		if r.code == CodeInternal {
			r.message = "profile " + profile + ": cannot get credentials: " + err.Error()
		}
	}
	r.message = text.CutCounted(r.message, maxMessage)
	return r
}

func (r *refusal) response() *extprocv3.ProcessingResponse {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{r.code, r.message})
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("content-type", "application/json"),
				setHeader(HeaderRefused, r.code),
			}},
			Body:    body,
			Details: "ocisigner_" + r.code + "_" + strconv.Itoa(r.status),
		},
	}}
}

func setHeader(name, value string) *corev3.HeaderValueOption {
	// Only RawValue: Envoy ignores value when raw_value is set and rejects both.
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, RawValue: []byte(value)}}
}
