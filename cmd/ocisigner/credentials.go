package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
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
	fs.DurationVar(&cf.refreshMargin, "refresh-margin", signer.DefaultRefreshMargin, "refresh this long before expiry, or a fifth of the token's lifetime if that is longer")
	fs.BoolVar(&cf.writeBack, "write-back", false, "also write refreshed session tokens to the token file (atomically, mode 0600); needs a writable folder")
	fs.StringVar(&cf.metadataURL, "metadata-url", signer.DefaultMetadataBaseURL, "instance metadata base URL for --principal instance")
	fs.StringVar(&cf.authURL, "auth-url", "", "auth service base URL instead of https://auth.<region>.<realm domain> (session refresh, federation)")
}

func (cf *credentialFlags) configPath(getenv func(string) string) string {
	return signer.ConfigPath(cf.config, getenv)
}

func (cf *credentialFlags) profileName(getenv func(string) string) string {
	return signer.ProfileName(cf.profile, getenv)
}

// credentialStore is what the commands sign from: every profile by name.
type credentialStore interface {
	extproc.Credentials
	Names() []string
	Close()
}

// open returns the credentials the flags describe: the config's profiles,
// with the default profile answered by --principal when one is given.
func (cf *credentialFlags) open(getenv func(string) string, log *slog.Logger, extra ...signer.Option) (credentialStore, error) {
	opts := append([]signer.Option{
		signer.WithLogger(log),
		signer.WithSessionRefresh(cf.sessionRefresh, cf.refreshMargin),
		signer.WithWriteBack(cf.writeBack),
		signer.WithMetadataBaseURL(cf.metadataURL),
		signer.WithGetenv(getenv),
	}, extra...)
	if cf.authURL != "" {
		opts = append(opts, signer.WithAuthBaseURL(cf.authURL))
	}
	path := cf.configPath(getenv)
	if cf.principal == "" {
		return signer.OpenConfig(path, opts...)
	}
	var src signer.Source
	switch cf.principal {
	case "instance":
		src = signer.InstancePrincipal(opts...)
	case "resource":
		s, err := signer.ResourcePrincipal(opts...)
		if err != nil {
			return nil, err
		}
		src = s
	case "workload":
		s, err := signer.WorkloadIdentity(opts...)
		if err != nil {
			return nil, err
		}
		src = s
	default:
		return nil, fmt.Errorf("--principal %q: want instance, resource or workload", cf.principal)
	}
	r := &principalStore{name: cf.profileName(getenv), src: src}
	// Other profiles stay available by name when there is a config file.
	if _, err := os.Stat(path); err == nil {
		cfg, err := signer.OpenConfig(path, opts...)
		if err != nil {
			return nil, err
		}
		r.cfg = cfg
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return r, nil
}

// principalStore answers the default profile with a principal and any
// other name from the config file, if there is one.
type principalStore struct {
	name string
	src  signer.Source
	cfg  *signer.ConfigFile
}

func (p *principalStore) Source(profile string) signer.Source {
	if profile == p.name {
		return p.src
	}
	if p.cfg != nil {
		return p.cfg.Source(profile)
	}
	return signer.NotFound(profile, "only the default profile "+p.name+" is configured (by --principal)")
}

func (p *principalStore) Names() []string {
	names := []string{p.name}
	if p.cfg != nil {
		for _, n := range p.cfg.Names() {
			if n != p.name {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

func (p *principalStore) Close() {
	if c, ok := p.src.(interface{ Close() }); ok {
		c.Close()
	}
	if p.cfg != nil {
		p.cfg.Close()
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
