package signer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidOCID is wrapped by CheckOCID.
var ErrInvalidOCID = errors.New("invalid OCID")

// maxOCIDLen bounds an OCID: OCI's are about 90 bytes; 255 is generous.
const maxOCIDLen = 255

// CheckOCID accepts an Oracle Cloud ID as OCI writes them,
// ocid1.<resource type>.<realm>.[region][.future use].<unique ID>, of lower-case
// letters, digits, hyphens and dots only, and, when types are given, of one
// of those resource types (compartment, tenancy, ...). An OCID goes into a
// header of requests ocisigner signs: nothing else may.
func CheckOCID(s string, types ...string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidOCID, quoteCapped(s, 96), why)
	}
	if len(s) > maxOCIDLen {
		return bad(fmt.Sprintf("%d bytes is longer than any OCID", len(s)))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return bad("an OCID holds only lower-case letters, digits, '-', '_' and '.', not " + describeByte(c))
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) < 5 || len(parts) > 6 || parts[0] != "ocid1" {
		return bad("an OCID reads ocid1.<resource type>.<realm>.[region].<unique ID>, e.g. ocid1.compartment.oc1..aaaa…")
	}
	if parts[1] == "" || parts[2] == "" || parts[len(parts)-1] == "" {
		return bad("its resource type, realm and unique ID must not be empty")
	}
	if len(types) > 0 && !slices.Contains(types, parts[1]) {
		return bad(fmt.Sprintf("it is the OCID of a %s; want a %s", parts[1], strings.Join(types, " or a ")))
	}
	return nil
}
