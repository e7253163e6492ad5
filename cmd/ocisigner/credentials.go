package main

import (
	"flag"
	"log/slog"
	"time"

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
	metadataURL    string
	authURL        string
}

func (cf *credentialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.config, "config", "", "OCI config file (default: $OCI_CLI_CONFIG_FILE, else $OCI_CONFIG_FILE, else ~/.oci/config)")
	fs.StringVar(&cf.profile, "profile", "", "default profile (default: $OCI_CLI_PROFILE, else DEFAULT)")
	fs.StringVar(&cf.principal, "principal", "", "sign the default profile as this principal instead of from the config: instance, resource or workload (OKE workload identity)")
	fs.BoolVar(&cf.sessionRefresh, "session-refresh", true, "refresh session tokens before they expire, until the session ends")
	fs.DurationVar(&cf.refreshMargin, "refresh-margin", credentials.DefaultRefreshMargin, "refresh this long before expiry, or a fifth of the token's lifetime if that is longer")
	fs.BoolVar(&cf.writeBack, "write-back", false, "also write refreshed session tokens to the token file (atomically, mode 0600); needs a writable folder")
	fs.StringVar(&cf.metadataURL, "metadata-url", credentials.DefaultMetadataBaseURL, "instance metadata base URL for --principal instance")
	fs.StringVar(&cf.authURL, "auth-url", "", "auth service base URL instead of https://auth.<region>.<realm domain> (session refresh, federation)")
}

func (cf *credentialFlags) configPath(getenv func(string) string) string {
	return credentials.ConfigPath(cf.config, getenv)
}

func (cf *credentialFlags) profileName(getenv func(string) string) string {
	return credentials.ProfileName(cf.profile, getenv)
}

// open returns the credentials the flags describe: the config's profiles,
// with the default profile answered by --principal when one is given.
func (cf *credentialFlags) open(getenv func(string) string, log *slog.Logger, extra ...credentials.Option) (*credentials.Store, error) {
	opts := append([]credentials.Option{
		credentials.WithLogger(log),
		credentials.WithSessionRefresh(cf.sessionRefresh, cf.refreshMargin),
		credentials.WithWriteBack(cf.writeBack),
		credentials.WithMetadataBaseURL(cf.metadataURL),
		credentials.WithGetenv(getenv),
	}, extra...)
	if cf.authURL != "" {
		opts = append(opts, credentials.WithAuthBaseURL(cf.authURL))
	}
	return credentials.Open(credentials.Settings{
		ConfigPath:     cf.configPath(getenv),
		DefaultProfile: cf.profileName(getenv),
		Principal:      cf.principal,
		// Secrets as values, from the environment only (a flag shows in ps).
		SessionToken: getenv(credentials.EnvSecurityToken),
		Passphrase:   getenv(credentials.EnvPassphrase),
	}, opts...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
