package credentialstest

import (
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/internal/hook"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// SubjectTokenPollInterval is how often the token-exchange principal reads
// its subject token file while the current token is valid: advance a Clock
// by it to make the loop look at a rotated file.
const SubjectTokenPollInterval = hook.SubjectTokenPollInterval

// WorkloadIdentity sends the OKE workload identity principal to endpoint (a
// signertest.Proxymux) instead of https://$KUBERNETES_SERVICE_HOST:12250,
// with the service-account token and the cluster CA read from tokenPath
// and caPath; empty values keep the defaults.
func WorkloadIdentity(endpoint, tokenPath, caPath string) credentials.Option {
	return hook.WorkloadIdentity(endpoint, tokenPath, caPath).(credentials.Option)
}

// UseFixedSessionKeys makes every principal of the process bind its tokens
// to signertest's fixed keys, a different one at each federation, instead
// of generating RSA-2048 keys: seconds each under the race detector, for
// nothing a test checks. Call it from TestMain, before any test runs.
func UseFixedSessionKeys() { hook.SessionKey = signertest.SessionKeys() }
