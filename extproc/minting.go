package extproc

import (
	"net/url"
	"slices"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// Credential minting: requests by which a workload would turn the
// gateway's identity into credentials of its own, usable without the
// gateway and outliving it. A signer that signs them hands its identity
// away, so they are refused unless the operator allows them.
//
// What counts, and why (oci-go-sdk v65 names; minting_test.go holds every
// entry to the SDK's source):
//   - a call whose answer carries a new secret: an auth token (and its
//     deprecated name, a Swift password), a customer secret key, SMTP, OAuth
//     client or database credentials, a console password (created, reset or
//     set), a TOTP seed, a SCIM client's reset secret, a new app's client
//     secret;
//   - a call that makes a key the caller chose an authenticator: an API key,
//     an OAuth client or partner certificate;
//   - the identity domains' multi-factor enrolment (initiator, validator),
//     which binds a factor the caller holds;
//   - a pre-authenticated request: a bearer URL to a bucket or object,
//     valid without any signature until an expiry the caller picks;
//   - every non-read request to the auth service (auth.<region>.<domain>),
//     whose only business is issuing sessions: x509 and OAuth2-scoped
//     federation, resource principal sessions, session refresh, user and
//     scoped tokens (UPST);
//   - an identity domain's token endpoint.
//
// What does not: descriptions and display names of existing credentials
// (UpdateAuthToken and the like change only those), deleting or listing
// them, activating a TOTP device (it needs a code from a seed only the
// refused calls reveal), policies, groups, users, dynamic groups and
// identity providers (they change who is trusted or allowed, are guarded
// by the gateway principal's IAM policy, and hand out no secret), host
// access (bastion sessions, instance SSH keys: access to a machine, not to
// the identity), kubeconfigs (their token is minted through the gateway
// each time), database wallets (a connection's TLS material; the database
// password is not the gateway's), and reading a secret that exists (Vault,
// an app's client secret): that is not minting, and a policy of its own.

// A mintingOp is one refused operation: a method and a path template on a
// host family.
type mintingOp struct {
	family   hostFamily
	method   string
	template string // "{name}" matches one segment
	op       string // what the refusal names
}

// hostFamily is the kind of OCI service a host serves.
type hostFamily uint8

const (
	familyNone hostFamily = iota
	familyIdentity
	familyIdentityDomain
	familyAuth
	familyObjectStorage
)

// mintingOps lists what is matched exactly. The auth service is refused
// beyond it (mintingOperation); its entries name what is refused.
var mintingOps = []mintingOp{
	// identity (oci-go-sdk identity, BasePath 20160918)
	{familyIdentity, "POST", "/20160918/users/{userId}/apiKeys", "identity.UploadApiKey"},
	{familyIdentity, "POST", "/20160918/users/{userId}/authTokens", "identity.CreateAuthToken"},
	{familyIdentity, "POST", "/20160918/users/{userId}/swiftPasswords", "identity.CreateSwiftPassword"},
	{familyIdentity, "POST", "/20160918/users/{userId}/customerSecretKeys", "identity.CreateCustomerSecretKey"},
	{familyIdentity, "POST", "/20160918/users/{userId}/smtpCredentials", "identity.CreateSmtpCredential"},
	{familyIdentity, "POST", "/20160918/users/{userId}/oauth2ClientCredentials", "identity.CreateOAuthClientCredential"},
	// isResetPassword in its body returns a new secret.
	{familyIdentity, "PUT", "/20160918/users/{userId}/oauth2ClientCredentials/{oauth2ClientCredentialId}", "identity.UpdateOAuthClientCredential"},
	{familyIdentity, "POST", "/20160918/users/{userId}/dbCredentials", "identity.CreateDbCredential"},
	{familyIdentity, "POST", "/20160918/users/{userId}/uiPassword", "identity.CreateOrResetUIPassword"},
	{familyIdentity, "POST", "/20160918/users/{userId}/mfaTotpDevices", "identity.CreateMfaTotpDevice"},
	{familyIdentity, "POST", "/20160918/users/{userId}/mfaTotpDevices/{mfaTotpDeviceId}/actions/generateSeed", "identity.GenerateTotpSeed"},
	{familyIdentity, "POST", "/20160918/identityProviders/{identityProviderId}/actions/resetScimClient", "identity.ResetIdpScimClient"},

	// identity domains (oci-go-sdk identitydomains; the host is the domain's URL)
	{familyIdentityDomain, "POST", "/admin/v1/ApiKeys", "identitydomains.CreateApiKey"},
	{familyIdentityDomain, "POST", "/admin/v1/MyApiKeys", "identitydomains.CreateMyApiKey"},
	{familyIdentityDomain, "POST", "/admin/v1/AuthTokens", "identitydomains.CreateAuthToken"},
	{familyIdentityDomain, "POST", "/admin/v1/MyAuthTokens", "identitydomains.CreateMyAuthToken"},
	{familyIdentityDomain, "POST", "/admin/v1/CustomerSecretKeys", "identitydomains.CreateCustomerSecretKey"},
	{familyIdentityDomain, "POST", "/admin/v1/MyCustomerSecretKeys", "identitydomains.CreateMyCustomerSecretKey"},
	{familyIdentityDomain, "POST", "/admin/v1/SmtpCredentials", "identitydomains.CreateSmtpCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/MySmtpCredentials", "identitydomains.CreateMySmtpCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/OAuth2ClientCredentials", "identitydomains.CreateOAuth2ClientCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/MyOAuth2ClientCredentials", "identitydomains.CreateMyOAuth2ClientCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/UserDbCredentials", "identitydomains.CreateUserDbCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/MyUserDbCredentials", "identitydomains.CreateMyUserDbCredential"},
	{familyIdentityDomain, "POST", "/admin/v1/OAuthClientCertificates", "identitydomains.CreateOAuthClientCertificate"},
	{familyIdentityDomain, "POST", "/admin/v1/OAuthPartnerCertificates", "identitydomains.CreateOAuthPartnerCertificate"},
	{familyIdentityDomain, "POST", "/admin/v1/Apps", "identitydomains.CreateApp"},
	{familyIdentityDomain, "PUT", "/admin/v1/UserPasswordChanger/{userPasswordChangerId}", "identitydomains.PutUserPasswordChanger"},
	{familyIdentityDomain, "PUT", "/admin/v1/UserPasswordResetter/{userPasswordResetterId}", "identitydomains.PutUserPasswordResetter"},
	{familyIdentityDomain, "PUT", "/admin/v1/MePasswordChanger", "identitydomains.PutMePasswordChanger"},
	{familyIdentityDomain, "POST", "/admin/v1/MyAuthenticationFactorInitiator", "identitydomains.CreateMyAuthenticationFactorInitiator"},
	{familyIdentityDomain, "POST", "/admin/v1/MyAuthenticationFactorValidator", "identitydomains.CreateMyAuthenticationFactorValidator"},
	// common/auth: the token exchange's endpoint (newIDAuthClient).
	{familyIdentityDomain, "POST", "/oauth2/v1/token", "identitydomains.OAuth2Token"},

	// the auth service (identitydataplane, BasePath v1; common/auth)
	{familyAuth, "POST", "/v1/actions/generateScopedAccessToken", "identitydataplane.GenerateScopedAccessToken"},
	{familyAuth, "POST", "/v1/token/upst/actions/GenerateUpst", "identitydataplane.GenerateUserSecurityToken"},
	{familyAuth, "POST", "/v1/x509", "auth.X509Federation"},
	{familyAuth, "POST", "/v1/oauth2/scoped", "auth.OAuth2ScopedFederation"},
	{familyAuth, "POST", "/v1/resourcePrincipalSessionToken", "auth.ResourcePrincipalSessionToken"},
	{familyAuth, "POST", "/v1/authentication/refresh", "auth.RefreshSessionToken"},

	// Object Storage
	{familyObjectStorage, "POST", "/n/{namespaceName}/b/{bucketName}/p", "objectstorage.CreatePreauthenticatedRequest"},
}

// opAuthService names a non-read request to the auth service that no entry
// names.
const opAuthService = "auth service request"

// credentialMinting reports whether a request would mint credentials, and
// which operation it is. method is the request's, host its authority (a
// port and any case allowed), target its :path. The path is matched as
// every server on the way might read it: percent-decoded (once and
// repeatedly, with %2F kept inside a segment and taken as a separator),
// with empty, "." and ".." segments resolved, ";" parameters and the query
// dropped, and literal segments compared without regard to case. A
// refusal that is too broad costs a legitimate client nothing it could
// want: none of these variants is another OCI operation.
func credentialMinting(method, host, target string) (operation string, ok bool) {
	family := hostFamilyOf(host)
	if family == familyNone {
		return "", false
	}
	method = strings.ToUpper(strings.TrimSpace(method))
	for _, segs := range pathVariants(target) {
		for _, m := range mintingOps {
			if m.family == family && m.method == method && matchTemplate(m.template, segs) {
				return m.op, true
			}
		}
	}
	if family == familyAuth && method != "GET" && method != "HEAD" && method != "OPTIONS" {
		return opAuthService, true
	}
	return "", false
}

// hostFamilyOf tells which service a host is: identity.<region>[.oci].<realm>,
// idcs-<id>…identity.<realm> (an identity domain), auth.<region>[.oci].<realm>,
// or Object Storage (objectstorage.<region>…, <namespace>.objectstorage…,
// under a realm or not: the dedicated per-namespace endpoints are not).
func hostFamilyOf(host string) hostFamily {
	a, err := signer.ParseAuthority(host)
	if err != nil || a.IP {
		return familyNone
	}
	labels := strings.Split(a.Host, ".")
	realm := signer.IsRealmHost(a.Host)
	switch {
	case realm && labels[0] == "identity":
		return familyIdentity
	case realm && strings.HasPrefix(labels[0], "idcs-") && slices.Contains(labels[1:], "identity"):
		return familyIdentityDomain
	case realm && labels[0] == "auth":
		return familyAuth
	case labels[0] == "objectstorage" || len(labels) > 2 && labels[1] == "objectstorage":
		return familyObjectStorage
	}
	return familyNone
}

// maxDecodes bounds the rounds of percent-decoding tried: a path encoded
// more often than that is not one any server decodes back.
const maxDecodes = 4

// pathVariants returns the path of target as a server might read it,
// split into segments, in every reading pathVariants knows.
func pathVariants(target string) [][]string {
	p := stripAbsoluteForm(target)
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	var out [][]string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, segments(s))
		}
	}
	add(p)
	for full, kept, i := p, p, 0; i < maxDecodes; i++ {
		full, kept = unescape(full, false), unescape(kept, true)
		add(full)
		add(kept)
	}
	return out
}

// stripAbsoluteForm drops the scheme and authority of an absolute-form
// target (http://host/path).
func stripAbsoluteForm(target string) string {
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && u.Host != "" {
		if i := strings.Index(target, u.Host); i >= 0 {
			rest := target[i+len(u.Host):]
			if !strings.HasPrefix(rest, "/") {
				rest = "/" + rest
			}
			return rest
		}
	}
	return target
}

// segments splits a path on "/" (and "\", which some servers take for one),
// drops empty segments and ";" parameters, and resolves "." and "..". A
// "%2F" still encoded stays inside its segment.
func segments(p string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	return out
}

// unescape decodes every %XX (but, with keepSlash, %2F and %5C, so that an
// encoded separator stays inside its segment); invalid escapes stay as
// they are.
func unescape(s string, keepSlash bool) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if !keepSlash || c != '/' && c != '\\' {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// matchTemplate reports whether segs is template's path: the same number
// of segments, literal ones equal without regard to case, a "{name}" one
// anything.
func matchTemplate(template string, segs []string) bool {
	tsegs := strings.Split(strings.TrimPrefix(template, "/"), "/")
	if len(tsegs) != len(segs) {
		return false
	}
	for i, t := range tsegs {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			continue
		}
		if !strings.EqualFold(t, segs[i]) {
			return false
		}
	}
	return true
}
