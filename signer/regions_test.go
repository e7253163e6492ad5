package signer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/oracle/oci-go-sdk/v65/common"

	"github.com/ocisigner/ocisigner/signer"
)

// The spec's realm list (oci-signing.md), which the table must cover.
var specRealmDomains = []string{
	"oraclecloud.com", "oraclegovcloud.com", "oraclegovcloud.uk", "oraclecloud8.com", "oraclecloud9.com",
	"oraclecloud10.com", "oraclecloud14.com", "oraclecloud15.com", "oraclecloud.eu", "oraclecloud20.com",
	"oraclecloud21.com", "oraclecloud23.com", "oraclecloud24.com", "oraclecloud26.com", "oraclecloud29.com",
	"oraclecloud35.com", "oraclecloud42.com", "oraclecloud51.com", "oraclecloud52.com",
}

func TestRegionTableMatchesSDK(t *testing.T) {
	for _, id := range signer.KnownRegions() {
		r := signer.MustParseRegion(id)
		sdk := common.StringToRegion(id)
		realm, err := sdk.RealmID()
		if err != nil {
			t.Errorf("%s: SDK does not know it: %v", id, err)
			continue
		}
		if r.Realm != realm || r.Domain != sdk.SecondLevelDomain() {
			t.Errorf("%s: ours %s/%s, SDK %s/%s", id, r.Realm, r.Domain, realm, sdk.SecondLevelDomain())
		}
		if short := signer.RegionShortCode(id); short != "" {
			if got := common.StringToRegion(short); string(got) != id {
				t.Errorf("short code %s: SDK says %s, we say %s", short, got, id)
			}
			if got := signer.MustParseRegion(strings.ToUpper(short)); got.ID != id {
				t.Errorf("short code %s resolves to %s", short, got.ID)
			}
		}
	}
	got := strings.Join(signer.RealmDomains(), ",")
	for _, d := range specRealmDomains {
		if !strings.Contains(","+got+",", ","+d+",") {
			t.Errorf("realm domain %s missing", d)
		}
	}
}

func TestParseRegion(t *testing.T) {
	for _, tc := range []struct{ in, id, realm, endpoint string }{
		{"us-phoenix-1", "us-phoenix-1", "oc1", "objectstorage.us-phoenix-1.oraclecloud.com"},
		{"phx", "us-phoenix-1", "oc1", "objectstorage.us-phoenix-1.oraclecloud.com"},
		{"IAD", "us-ashburn-1", "oc1", "objectstorage.us-ashburn-1.oraclecloud.com"},
		{"us-langley-1", "us-langley-1", "oc2", "objectstorage.us-langley-1.oraclegovcloud.com"},
		{"uk-gov-london-1", "uk-gov-london-1", "oc4", "objectstorage.uk-gov-london-1.oraclegovcloud.uk"},
		{"eu-frankfurt-2", "eu-frankfurt-2", "oc19", "objectstorage.eu-frankfurt-2.oraclecloud.eu"},
		{"xx-future-1", "xx-future-1", "oc1", "objectstorage.xx-future-1.oraclecloud.com"}, // unknown: oc1, as the SDKs do
	} {
		r, err := signer.ParseRegion(tc.in)
		if err != nil || r.ID != tc.id || r.Realm != tc.realm || r.Endpoint("objectstorage") != tc.endpoint {
			t.Errorf("%s: %+v %s %v", tc.in, r, r.Endpoint("objectstorage"), err)
		}
	}
}

// Every way a region can be written that is not one DNS label is refused
// where it enters, so that no URL built from it can name another host.
func TestParseRegionRefusesWhatIsNotALabel(t *testing.T) {
	for _, in := range []string{"", " ", "x@127.0.0.1:8443/", "us-ashburn-1.attacker.net", "evil.example.com#",
		"us ashburn", "us-ashburn-1/x", "-us-ashburn-1", "us_ashburn_1", "us-ashburn-1\r\nx: y", "127.0.0.1", "[::1]",
		"us-ashburn-1?", "a:443", strings.Repeat("a", 64)} {
		r, err := signer.ParseRegion(in)
		if !errors.Is(err, signer.ErrInvalidRegion) {
			t.Errorf("ParseRegion(%q) = %+v, %v; want ErrInvalidRegion", in, r, err)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("ParseRegion(%q): the error carries a line break: %q", in, err)
		}
	}
}

func TestIsRealmHost(t *testing.T) {
	for host, want := range map[string]bool{
		"iaas.us-phoenix-1.oraclecloud.com":             true,
		"generativeai.us-chicago-1.oci.oraclecloud.com": true,
		"objectstorage.eu-frankfurt-2.oraclecloud.eu":   true,
		"identity.us-langley-1.oraclegovcloud.com:443":  true,
		"IAAS.US-PHOENIX-1.ORACLECLOUD.COM":             true,
		"iaas.us-phoenix-1.oraclecloud.com.":            false, // a trailing dot is refused, as any other empty label
		"evil.com#.oraclecloud.com":                     false,
		"user@iaas.us-phoenix-1.oraclecloud.com":        false,
		"x.uk-gov-london-1.oraclegovcloud.uk":           true,
		"x.region.oraclecloud52.com":                    true,
		"oraclecloud.com":                               false, // the bare domain is no API
		"evil-oraclecloud.com":                          false,
		"oraclecloud.com.evil.example":                  false,
		"example.com":                                   false,
		"127.0.0.1:8080":                                false,
		"[::1]:443":                                     false,
	} {
		if got := signer.IsRealmHost(host); got != want {
			t.Errorf("IsRealmHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestClosestRegions(t *testing.T) {
	for in, want := range map[string]string{
		"us-ashburn1":    "us-ashburn-1",
		"us-ashbrun-1":   "us-ashburn-1",
		"eu-frankfurt-3": "eu-frankfurt-1",
		"phx":            "us-phoenix-1",
		"ixd":            "us-ashburn-1", // iad
	} {
		if got := signer.ClosestRegions(in, 3); len(got) == 0 || got[0] != want {
			t.Errorf("ClosestRegions(%q) = %v, want %s first", in, got, want)
		}
	}
	if got := signer.ClosestRegions("nowhere-at-all-9", 3); len(got) != 0 {
		t.Errorf("far from everything: %v", got)
	}
}
