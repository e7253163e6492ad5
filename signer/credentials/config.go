package credentials

import (
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"maps"
	"os"
	"sort"
	"strings"

	"gopkg.in/ini.v1"

	"github.com/ocisigner/ocisigner/signer"
)

// Environment variables the OCI CLI and SDKs read, in order of precedence.
const (
	envCLIConfigFile = "OCI_CLI_CONFIG_FILE"
	envConfigFile    = "OCI_CONFIG_FILE"
	envCLIProfile    = "OCI_CLI_PROFILE"
)

// ConfigPath picks the config file as the CLI does: the flag, else
// OCI_CLI_CONFIG_FILE, else OCI_CONFIG_FILE, else ~/.oci/config.
func ConfigPath(flag string, getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, p := range []string{flag, getenv(envCLIConfigFile), getenv(envConfigFile)} {
		if p != "" {
			return expandHome(p)
		}
	}
	return expandHome("~/.oci/config")
}

// ProfileName picks the profile: the flag, else OCI_CLI_PROFILE, else DEFAULT.
func ProfileName(flag string, getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	if flag != "" {
		return flag
	}
	if p := getenv(envCLIProfile); p != "" {
		return p
	}
	return signer.DefaultProfile
}

// profile is one section of ~/.oci/config with [DEFAULT] merged in key by key.
type profile struct {
	Name       string
	ConfigPath string            // the config file it came from
	Values     map[string]string // every key, DEFAULT's included
	// Own are the keys the profile's own section sets, not inherited.
	Own map[string]bool

	layout *layout // what the config's paths say about where it was written
}

// Get returns a key's value, or "".
func (p *profile) Get(key string) string { return p.Values[key] }

// overridden is the profile with what the command line says instead of
// the config: its region, and how it signs (authentication_type).
func (p *profile) overridden(region string, kind signer.Kind) *profile {
	if region == "" && kind == "" {
		return p
	}
	q := *p
	q.Values = maps.Clone(p.Values)
	q.Own = maps.Clone(p.Own)
	if region != "" {
		q.Values["region"], q.Own["region"] = region, true
	}
	if kind != "" {
		q.Values["authentication_type"], q.Own["authentication_type"] = string(kind), true
	}
	return &q
}

// Region returns the profile's region, validated (signer.ParseRegion), as
// its identifier; "" when the profile names none. An invalid region makes
// the profile unusable: every URL built from it would be suspect.
func (p *profile) Region() (string, error) {
	v := p.Values["region"]
	if v == "" {
		return "", nil
	}
	return checkRegion(v, p.Name, p.ConfigPath, "region in the profile")
}

// checkRegion is where every region that credentials use enters: a
// profile's region, an environment variable, instance metadata, a setting.
// It returns the region's identifier, or an error naming where the value
// came from.
func checkRegion(value, profile, path, where string) (string, error) {
	r, err := signer.ParseRegion(value)
	if err != nil {
		return "", &signer.Error{Kind: signer.ErrConfig, Profile: profile, Path: path,
			Detail: where + " is not a region", Err: err,
			Hint: "set it to a region identifier such as us-ashburn-1 (or a short code such as iad)"}
	}
	return r.ID, nil
}

// Passphrase returns pass_phrase, or its alias passphrase.
func (p *profile) Passphrase() string {
	if v := p.Values["pass_phrase"]; v != "" {
		return v
	}
	return p.Values["passphrase"]
}

// Kind tells which principal the profile describes. authentication_type
// decides when the profile has it (own or inherited); else a profile whose
// own section names a security_token_file is a session profile, whatever
// [DEFAULT] holds: `oci session authenticate` appends exactly such a
// section below an API-key [DEFAULT] with a user, and signing it as that
// user's API key earns a 401.
func (p *profile) Kind() signer.Kind {
	switch strings.ToLower(p.Values["authentication_type"]) {
	case "instance_principal":
		return signer.KindInstance
	case "resource_principal":
		return signer.KindResource
	case "oke_workload_identity":
		return signer.KindWorkload
	case "token_exchange":
		return signer.KindTokenExchange
	case "security_token":
		return signer.KindSession
	case "api_key":
		return signer.KindAPIKey
	}
	if p.Values["security_token_file"] != "" && (p.Own["security_token_file"] || p.Values["user"] == "") {
		return signer.KindSession
	}
	return signer.KindAPIKey
}

func (p *profile) equal(q *profile) bool {
	if p.Name != q.Name || p.ConfigPath != q.ConfigPath || len(p.Values) != len(q.Values) || len(p.Own) != len(q.Own) {
		return false
	}
	for k := range p.Own {
		if !q.Own[k] {
			return false
		}
	}
	for k, v := range p.Values {
		if w, ok := q.Values[k]; !ok || w != v {
			return false
		}
	}
	// Where its files are looked for depends on the other profiles' paths.
	for _, k := range fileKeys {
		if v := p.Values[k]; v != "" {
			a, _ := p.layout.mounted(v)
			b, _ := q.layout.mounted(v)
			if a != b {
				return false
			}
		}
	}
	return true
}

// parseConfig reads an OCI config file's profiles. It accepts what the CLI
// writes: values containing '=', '#' or ';' (a pass phrase can), no
// continuation lines, keys case-insensitive, profile names case-sensitive.
func parseConfig(path string, data []byte) (map[string]*profile, error) {
	f, err := ini.LoadSources(ini.LoadOptions{
		InsensitiveKeys:         true,
		IgnoreInlineComment:     true,
		IgnoreContinuation:      true,
		PreserveSurroundedQuote: true,
		KeyValueDelimiters:      "=",
		SkipUnrecognizableLines: false,
		ChildSectionDelimiter:   "\x00",
	}, data)
	if err != nil {
		return nil, &signer.Error{Kind: signer.ErrConfig, Path: path, Detail: "cannot parse OCI config file", Err: err}
	}
	defaults := map[string]string{}
	if s, err := f.GetSection(ini.DefaultSection); err == nil {
		for _, k := range s.Keys() {
			defaults[k.Name()] = strings.TrimSpace(k.Value())
		}
	}
	out := map[string]*profile{}
	for _, s := range f.Sections() {
		name := s.Name()
		if name == ini.DefaultSection && len(s.Keys()) == 0 {
			continue
		}
		p := &profile{Name: name, ConfigPath: path, Values: make(map[string]string, len(defaults)+len(s.Keys())), Own: make(map[string]bool, len(s.Keys()))}
		for k, v := range defaults {
			p.Values[k] = v
		}
		for _, k := range s.Keys() {
			p.Values[k.Name()] = strings.TrimSpace(k.Value())
			p.Own[k.Name()] = true
		}
		out[name] = p
	}
	l := newLayout(path, out)
	for _, p := range out {
		p.layout = l
	}
	return out, nil
}

// ProfileRegion reads one profile's region from a config file once,
// without watching: the region's identifier, or "" when the profile names
// none.
func ProfileRegion(configPath, name string) (string, error) {
	p, err := readProfile(configPath, name)
	if err != nil {
		return "", err
	}
	return p.Region()
}

// readProfile reads one profile from a config file once.
func readProfile(configPath, name string) (*profile, error) {
	data, err := readFile(configPath, "OCI config file")
	if err != nil {
		return nil, withProfile(err, name)
	}
	profiles, err := parseConfig(configPath, data)
	if err != nil {
		return nil, withProfile(err, name)
	}
	p, ok := profiles[name]
	if !ok {
		return nil, profileNotFound(configPath, name, profiles)
	}
	return p, nil
}

func profileNotFound(configPath, name string, profiles map[string]*profile) error {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	have := "it has no profiles"
	if len(names) > 0 {
		have = "it has " + strings.Join(names, ", ")
	}
	hint := fmt.Sprintf("run `oci session authenticate --profile-name %s` or name an existing profile", name)
	if near := nearestName(name, names); near != "" {
		hint = fmt.Sprintf("did you mean %s? (profile names are case-sensitive); or %s", near, hint)
	}
	return &signer.Error{
		Kind: signer.ErrProfileNotFound, Profile: name, Path: configPath,
		Detail: fmt.Sprintf("no profile [%s] in %s (%s)", name, configPath, have),
		Hint:   hint,
	}
}

// nearestName is the profile a mistyped name most likely meant: the same
// name in another case, or one a single edit away.
func nearestName(name string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	for _, n := range names {
		if len(name) >= 3 && text.Distance(strings.ToLower(n), strings.ToLower(name)) == 1 {
			return n
		}
	}
	return ""
}
