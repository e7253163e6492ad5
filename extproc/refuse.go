package extproc

import (
	"encoding/json"
	"errors"
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
	CodeUnknownProfile     = "UnknownProfile"
	CodeCredentialsExpired = "CredentialsExpired"
	CodeCredentialsInvalid = "CredentialsUnusable"
	CodeBodyTooLarge       = "PayloadTooLarge"
	CodeMisconfigured      = "EnvoyMisconfigured"
	CodeInternal           = "InternalError"
)

// HeaderRefused marks a reply that ocisigner, not OCI, produced.
const HeaderRefused = "x-ocisigner-refused"

// refusal is a request ocisigner will not sign: it becomes an
// ImmediateResponse, because ending the stream any other way could let
// Envoy forward the request unsigned.
type refusal struct {
	status  int
	code    string
	message string
	err     error
}

func (r *refusal) Error() string { return r.code + ": " + r.message }

func refuse(status int, code, message string) *refusal {
	return &refusal{status: status, code: code, message: message}
}

// credentialRefusal maps a credential error to the status a client can act on.
func credentialRefusal(profile string, err error) *refusal {
	r := &refusal{err: err, message: err.Error()}
	switch {
	case errors.Is(err, signer.ErrProfileNotFound):
		r.status, r.code = http.StatusBadRequest, CodeUnknownProfile
	case errors.Is(err, signer.ErrTokenExpired):
		r.status, r.code = http.StatusUnauthorized, CodeCredentialsExpired
	default:
		var se *signer.Error
		if errors.As(err, &se) {
			r.status, r.code = http.StatusUnauthorized, CodeCredentialsInvalid
		} else {
			r.status, r.code = http.StatusInternalServerError, CodeInternal
			r.message = "profile " + profile + ": cannot get credentials: " + err.Error()
		}
	}
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
