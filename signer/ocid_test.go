package signer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
)

func TestCheckOCID(t *testing.T) {
	good := []string{
		"ocid1.compartment.oc1..aaaaaaaa3ukcyvqkm6ar5kp2zjehokd6b3k5nw6kltkv5olw3fxo2xnjaxja",
		"ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq",
		"ocid1.compartment.oc19.eu-frankfurt-2.aaaa",
		"ocid1.compartment.oc1.phx.future.aaaa",
	}
	for _, s := range good {
		if err := signer.CheckOCID(s, "compartment", "tenancy"); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{
		"", "ocid1.", "ocid1.compartment", "ocid2.compartment.oc1..aaaa", "ocid1.compartment.oc1..",
		"ocid1.compartment.oc1..aaaa\r\nx-evil: 1", "\r\nocid1.compartment.oc1..aaaa", "ocid1.compartment.oc1..AAAA",
		"ocid1.compartment.oc1..aa aa", "ocid1.compartment.oc1..aaaa%0d", "ocid1.user.oc1..aaaa",
		"ocid1.compartment.oc1.a.b.c.d", "ocid1.compartment.oc1.." + strings.Repeat("a", 300),
	} {
		err := signer.CheckOCID(s, "compartment", "tenancy")
		if !errors.Is(err, signer.ErrInvalidOCID) {
			t.Errorf("%q accepted", s)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n") || len(err.Error()) > 400 {
			t.Errorf("%q: error echoes it raw: %q", s, err)
		}
	}
}
