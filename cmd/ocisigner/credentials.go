package main

import (
	"flag"
	"log/slog"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
)

// credentialFlags are the flags every command shares to find credentials.
type credentialFlags struct {
	config  string
	profile string
}

func (cf *credentialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.config, "config", "", "OCI config file (default: $OCI_CLI_CONFIG_FILE, else $OCI_CONFIG_FILE, else ~/.oci/config)")
	fs.StringVar(&cf.profile, "profile", "", "profile to use (default: $OCI_CLI_PROFILE, else DEFAULT)")
}

func (cf *credentialFlags) configPath(getenv func(string) string) string {
	return signer.ConfigPath(cf.config, getenv)
}

func (cf *credentialFlags) profileName(getenv func(string) string) string {
	return signer.ProfileName(cf.profile, getenv)
}

// open returns the credentials of every profile the config names.
func (cf *credentialFlags) open(getenv func(string) string, log *slog.Logger) (extproc.Credentials, error) {
	return signer.OpenConfig(cf.configPath(getenv), signer.WithLogger(log))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
