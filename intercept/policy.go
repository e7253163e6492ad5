package intercept

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// ErrNotOCIEndpoint is returned (wrapped) by LooksLikeOCIEndpoint.
var ErrNotOCIEndpoint = errors.New("not an OCI endpoint")

// LooksLikeOCIEndpoint is the default Config.Allow: a lower-case DNS host
// name under an OCI realm domain with at least two labels before the
// domain, the shape of every OCI API host (<service>.<region>.<domain>,
// <service>.<region>.oci.<domain>, <service>.<region>.<domain> with a
// namespace or vault in front, idcs-<id>.identity.<domain>). The bare realm
// domain and a single label under it (www.oraclecloud.com) are no API
// hosts: a client has no reason to reach them through the signer, so no
// leaf is minted for them. Operator-allowed hosts outside the realms are
// the caller's policy to add.
func LooksLikeOCIEndpoint(name string) error {
	if !signer.ValidHostName(name) {
		return fmt.Errorf("%w: %q is not a lower-case DNS host name", ErrNotOCIEndpoint, capName(name))
	}
	for _, d := range signer.RealmDomains() {
		prefix, ok := strings.CutSuffix(name, "."+d)
		if !ok {
			continue
		}
		if strings.Count(prefix, ".") >= 1 {
			return nil
		}
		return fmt.Errorf("%w: %q is under %s but has no <service>.<region> in front of it", ErrNotOCIEndpoint, name, d)
	}
	return fmt.Errorf("%w: %q is not under an OCI realm domain", ErrNotOCIEndpoint, name)
}
