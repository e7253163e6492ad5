package signer

import (
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"sort"
	"strconv"
	"strings"
)

// DefaultRealm is the realm OCI tooling assumes for a region it does not know.
const DefaultRealm = "oc1"

// Region is a resolved OCI region, as ParseRegion makes it: ID is always
// one DNS label.
type Region struct {
	ID     string // us-phoenix-1
	Realm  string // oc1
	Domain string // oraclecloud.com
	Known  bool   // false when the region is not in the table and oc1 was assumed
}

var (
	regionByID    = map[string]region{}
	regionByShort = map[string]region{}
)

func init() {
	for _, r := range regions {
		regionByID[r.id] = r
		if r.short != "" {
			regionByShort[r.short] = r
		}
	}
}

// ErrInvalidRegion is wrapped by ParseRegion for a value that is not a
// region identifier or short code.
var ErrInvalidRegion = errors.New("invalid region")

// ParseRegion is the one door by which a region enters: from a profile's
// region, the environment (OCI_CLI_REGION, OCI_RESOURCE_PRINCIPAL_REGION),
// instance metadata or a flag. It accepts a region identifier
// (us-phoenix-1) or its short code (phx), case-insensitively, and returns
// its realm and domain. A region the table does not know is assumed to be
// in oc1, as the SDKs do, so that new commercial regions work before the
// table learns them; but whatever it is, it must be one DNS label (letters,
// digits, hyphens): every URL ocisigner builds from a region (the auth
// service's, the probe's, a gateway alias's) takes the region from here,
// so "x@127.0.0.1:8443/" in a profile cannot point a session refresh or a
// probe, with the session token in its keyId, at another host.
func ParseRegion(s string) (Region, error) {
	raw := s
	s = strings.ToLower(strings.TrimSpace(s))
	if err := checkLabel(s); err != nil {
		return Region{}, fmt.Errorf("%w %s: %w; a region is an identifier such as us-ashburn-1 or a short code such as iad",
			ErrInvalidRegion, quoteCapped(raw, 64), err)
	}
	r, ok := regionByID[s]
	if !ok {
		r, ok = regionByShort[s]
	}
	if !ok {
		return Region{ID: s, Realm: DefaultRealm, Domain: realmDomains[DefaultRealm]}, nil
	}
	return Region{ID: r.id, Realm: r.realm, Domain: realmDomains[r.realm], Known: true}, nil
}

// MustParseRegion is ParseRegion for a region written in the program (a
// test's literal); it panics on an invalid one.
func MustParseRegion(s string) Region {
	r, err := ParseRegion(s)
	if err != nil {
		panic(err)
	}
	return r
}

// quoteCapped quotes a value for an error message, at most n bytes of it:
// control characters escaped, and a long hostile value kept short.
func quoteCapped(s string, n int) string {
	return strconv.Quote(text.CutCounted(s, n))
}

// Endpoint returns the host of an OCI service in this region, such as
// objectstorage.us-phoenix-1.oraclecloud.com.
func (r Region) Endpoint(service string) string {
	return service + "." + r.ID + "." + r.Domain
}

// RealmDomains returns every realm's second-level domain, sorted and without
// duplicates (oc2 and oc3 share one).
func RealmDomains() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range realmDomains {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// IsRealmHost reports whether authority (a host with or without a port)
// lies under one of the OCI realm domains, which covers both
// <service>.<region>.<domain> and <service>.<region>.oci.<domain>. The bare
// domain itself is not an API host, and neither is anything ParseAuthority
// refuses.
func IsRealmHost(authority string) bool {
	a, err := ParseAuthority(authority)
	if err != nil || a.IP {
		return false
	}
	return realmDomainOf(a.Host) != ""
}

// realmDomainOf returns the realm domain a valid host name lies under, or "".
func realmDomainOf(host string) string {
	for _, d := range realmDomains {
		if len(host) > len(d)+1 && strings.HasSuffix(host, d) && host[len(host)-len(d)-1] == '.' {
			return d
		}
	}
	return ""
}

// KnownRegions lists the region identifiers of the table.
func KnownRegions() []string {
	out := make([]string, 0, len(regions))
	for _, r := range regions {
		out = append(out, r.id)
	}
	return out
}

// RegionShortCode returns a region's short code (phx for us-phoenix-1), or "".
func RegionShortCode(id string) string { return regionByID[id].short }

// ClosestRegions returns up to n region identifiers of the table nearest to
// s (by edit distance to the identifier or its short code), nearest first,
// for a "did you mean" when a region is not in the table.
func ClosestRegions(s string, n int) []string {
	s = strings.ToLower(strings.TrimSpace(s))
	type cand struct {
		id   string
		dist int
	}
	var cands []cand
	for _, r := range regions {
		d := text.Distance(s, r.id)
		if r.short != "" {
			d = min(d, text.Distance(s, r.short))
		}
		if d <= max(2, len(s)/3) {
			cands = append(cands, cand{r.id, d})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].dist != cands[j].dist {
			return cands[i].dist < cands[j].dist
		}
		return cands[i].id < cands[j].id
	})
	var out []string
	for i := 0; i < len(cands) && i < n; i++ {
		out = append(out, cands[i].id)
	}
	return out
}
