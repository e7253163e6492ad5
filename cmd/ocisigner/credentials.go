package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
)

// credentialFlags are the flags every command shares to find credentials.
type credentialFlags struct {
	config         string
	profile        string
	principal      string
	sessionRefresh bool
	refreshMargin  time.Duration
	writeBack      bool
	metadataURL    urlFlag
	authURL        urlFlag
	// The token-exchange principal; its secrets come from files or from
	// OCISIGNER_CLIENT_SECRET / OCISIGNER_SUBJECT_TOKEN, never from flags.
	tokenExchangeURL urlFlag
	clientID         string
	clientSecretFile string
	subjectTokenFile string
	region           regionFlag
	// auth is the OCI CLI's --auth (OCI_CLI_AUTH): a principal, or how the
	// default profile signs. settle turns it into principal or kind.
	auth string
	kind signer.Kind // the default profile's, when auth names one
}

// The OCI CLI's environment, read as the CLI reads it.
const (
	envCLIAuth   = "OCI_CLI_AUTH"
	envCLIRegion = "OCI_CLI_REGION"
)

// cliAuth maps the OCI CLI's --auth values to a principal or to how the
// default profile signs.
var cliAuth = map[string]struct {
	principal string
	kind      signer.Kind
}{
	"api_key":               {kind: signer.KindAPIKey},
	"security_token":        {kind: signer.KindSession},
	"instance_principal":    {principal: credentials.PrincipalInstance},
	"resource_principal":    {principal: credentials.PrincipalResource},
	"oke_workload_identity": {principal: credentials.PrincipalWorkload},
}

// settle reads what the OCI CLI's dialect says (--auth, OCI_CLI_AUTH,
// OCI_CLI_REGION) into the flags, once they are parsed: --principal and
// --region (or their OCISIGNER_ variables) win over the CLI's variables,
// and two settings that disagree are a usage error.
func (cf *credentialFlags) settle(getenv environ) func() error {
	return func() error {
		auth, from := cf.auth, "--auth"
		if auth == "" {
			auth, from = getenv.get(envCLIAuth), envCLIAuth
		}
		if auth != "" {
			a, ok := cliAuth[strings.ToLower(auth)]
			if !ok {
				return fmt.Errorf("%s %q: ocisigner signs as api_key, security_token, instance_principal, resource_principal or oke_workload_identity (instance_obo_user is not supported)", from, auth)
			}
			switch {
			case a.principal != "" && cf.principal != "" && cf.principal != a.principal:
				return fmt.Errorf("%s %s and --principal %s disagree: give one", from, auth, cf.principal)
			case a.kind != "" && cf.principal != "" && from == "--auth":
				return fmt.Errorf("--auth %s signs with a profile of the config, --principal %s without: give one", auth, cf.principal)
			case a.kind != "" && cf.principal != "":
				// OCI_CLI_AUTH left set for the CLI: --principal says otherwise.
			case a.principal != "":
				cf.principal = a.principal
			default:
				cf.kind = a.kind
			}
		}
		if cf.region == "" {
			if v := getenv.get(envCLIRegion); v != "" {
				if err := cf.region.Set(v); err != nil {
					return fmt.Errorf("%s: %w", envCLIRegion, err)
				}
			}
		}
		return nil
	}
}

// regionFlag is a --region: validated as it is parsed (signer.ParseRegion),
// so a value that is not a region stops the command with exit 2 before
// any URL is built from it.
type regionFlag string

func (r *regionFlag) String() string { return string(*r) }
func (r *regionFlag) Set(v string) error {
	reg, err := signer.ParseRegion(v)
	if err != nil {
		return err
	}
	*r = regionFlag(reg.ID)
	return nil
}

func (cf *credentialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.config, "config", "", "OCI config file (default: $OCI_CLI_CONFIG_FILE, else $OCI_CONFIG_FILE, else ~/.oci/config)")
	fs.StringVar(&cf.config, "config-file", "", "the same as --config, as the OCI CLI spells it")
	fs.StringVar(&cf.auth, "auth", "", "as the OCI CLI's --auth (else $"+envCLIAuth+"): api_key or security_token (how the default profile signs, whatever the config says), instance_principal, resource_principal or oke_workload_identity (as --principal)")
	fs.StringVar(&cf.profile, "profile", "", "default profile (default: $OCI_CLI_PROFILE, else DEFAULT)")
	fs.StringVar(&cf.principal, "principal", "", "sign the default profile as this principal instead of from the config: instance, resource, workload (OKE workload identity) or token-exchange (an identity domain exchanges a trusted IdP's JWT)")
	fs.BoolVar(&cf.sessionRefresh, "session-refresh", true, "refresh session tokens before they expire, until the session ends")
	fs.DurationVar(&cf.refreshMargin, "refresh-margin", credentials.DefaultRefreshMargin, "refresh this long before expiry, or a fifth of the token's lifetime if that is longer")
	fs.BoolVar(&cf.writeBack, "write-back", false, "also write refreshed session tokens to the token file (atomically, mode 0600); needs a writable folder")
	cf.metadataURL = urlFlag{value: credentials.DefaultMetadataBaseURL}
	cf.authURL = urlFlag{plainHTTP: loopback}
	cf.tokenExchangeURL = urlFlag{plainHTTP: loopback}
	fs.Var(&cf.metadataURL, "metadata-url", "instance metadata base URL for --principal instance")
	fs.Var(&cf.authURL, "auth-url", "auth service base URL instead of https://auth.<region>.<realm domain> (session refresh, federation); http:// only on loopback")
	fs.Var(&cf.tokenExchangeURL, "token-exchange-url", "identity domain URL (https://idcs-<id>.identity.oraclecloud.com) for --principal token-exchange")
	fs.StringVar(&cf.clientID, "client-id", "", "OAuth client ID of the identity domain's confidential application, for --principal token-exchange")
	fs.StringVar(&cf.clientSecretFile, "client-secret-file", "", "file holding the client secret, read at each exchange (else $"+credentials.EnvClientSecret+"), for --principal token-exchange")
	fs.StringVar(&cf.subjectTokenFile, "subject-token-file", "", "file the platform keeps the IdP's JWT in, read at each exchange and watched for rotation (else $"+credentials.EnvSubjectToken+"), for --principal token-exchange")
	fs.Var(&cf.region, "region", "the default profile's region instead of the config's (else $"+envCLIRegion+"), as the OCI CLI's: what aliases resolve with, probe probes and --principal token-exchange signs for (identifier or short code, e.g. us-phoenix-1 or phx)")
}

func (cf *credentialFlags) configPath(getenv environ) string {
	return credentials.ConfigPath(cf.config, getenv.get)
}

func (cf *credentialFlags) profileName(getenv environ) string {
	return credentials.ProfileName(cf.profile, getenv.get)
}

// open returns the credentials the flags describe: the config's profiles,
// with the default profile answered by --principal when one is given.
func (cf *credentialFlags) open(getenv environ, log *slog.Logger, extra ...credentials.Option) (*credentials.Store, error) {
	opts := append([]credentials.Option{
		credentials.WithLogger(log),
		credentials.WithSessionRefresh(cf.sessionRefresh, cf.refreshMargin),
		credentials.WithWriteBack(cf.writeBack),
		credentials.WithMetadataBaseURL(cf.metadataURL.value),
		credentials.WithGetenv(getenv.get),
	}, extra...)
	if cf.authURL.value != "" {
		opts = append(opts, credentials.WithAuthBaseURL(cf.authURL.value))
	}
	var tx *credentials.TokenExchange
	if cf.principal == credentials.PrincipalTokenExchange {
		tx = &credentials.TokenExchange{
			DomainURL: cf.tokenExchangeURL.value, ClientID: cf.clientID, ClientSecretFile: cf.clientSecretFile,
			SubjectTokenFile: cf.subjectTokenFile, Region: string(cf.region),
		}
	}
	return credentials.Open(credentials.Settings{
		ConfigPath:     cf.configPath(getenv),
		DefaultProfile: cf.profileName(getenv),
		Principal:      cf.principal,
		// Secrets as values, from the environment only (a flag shows in ps).
		SessionToken:  getenv.get(credentials.EnvSecurityToken),
		Passphrase:    getenv.get(credentials.EnvPassphrase),
		Region:        string(cf.region),
		Auth:          cf.kind,
		TokenExchange: tx,
	}, opts...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
