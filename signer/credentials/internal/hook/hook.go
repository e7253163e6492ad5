// Package hook carries what credentialstest needs of package credentials
// without credentials exporting it: tests outside the package reach these
// only through credentialstest, so `go doc` of credentials stays the API
// that cmd and extproc use. This is grpc-go's internal-hook pattern.
package hook

import (
	"crypto/rsa"
	"time"
)

// SubjectTokenPollInterval is how often the token-exchange principal reads
// its subject token file while the current token is valid.
const SubjectTokenPollInterval = 30 * time.Second

// WorkloadIdentity is set by package credentials: it returns a
// credentials.Option (as any, to avoid the import cycle) that sends the OKE
// workload identity to endpoint, with the service-account token and the
// cluster CA at tokenPath and caPath; empty values keep the defaults.
var WorkloadIdentity func(endpoint, tokenPath, caPath string) any

// SessionKey, when set, makes the session keys principals bind their
// tokens to, instead of generating RSA-2048 keys (seconds each under the
// race detector). Set before any principal runs; credentialstest sets it.
var SessionKey func() (*rsa.PrivateKey, error)
