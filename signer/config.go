package signer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/ini.v1"
)

// DefaultProfile is the profile used when none is named.
const DefaultProfile = "DEFAULT"

// Environment variables the OCI CLI and SDKs read, in order of precedence.
const (
	EnvCLIConfigFile = "OCI_CLI_CONFIG_FILE"
	EnvConfigFile    = "OCI_CONFIG_FILE"
	EnvCLIProfile    = "OCI_CLI_PROFILE"
)

// ConfigPath picks the config file as the CLI does: the flag, else
// OCI_CLI_CONFIG_FILE, else OCI_CONFIG_FILE, else ~/.oci/config.
func ConfigPath(flag string, getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, p := range []string{flag, getenv(EnvCLIConfigFile), getenv(EnvConfigFile)} {
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
	if p := getenv(EnvCLIProfile); p != "" {
		return p
	}
	return DefaultProfile
}

// Profile is one section of ~/.oci/config with [DEFAULT] merged in key by key.
type Profile struct {
	Name       string
	ConfigPath string            // the config file it came from
	Values     map[string]string // every key, DEFAULT's included
}

// Get returns a key's value, or "".
func (p *Profile) Get(key string) string { return p.Values[key] }

// Passphrase returns pass_phrase, or its alias passphrase.
func (p *Profile) Passphrase() string {
	if v := p.Values["pass_phrase"]; v != "" {
		return v
	}
	return p.Values["passphrase"]
}

// Kind tells which principal the profile describes.
func (p *Profile) Kind() Kind {
	switch strings.ToLower(p.Values["authentication_type"]) {
	case "instance_principal":
		return KindInstance
	case "resource_principal":
		return KindResource
	case "oke_workload_identity":
		return KindWorkload
	}
	if p.Values["security_token_file"] != "" && (p.Values["user"] == "" || strings.EqualFold(p.Values["authentication_type"], "security_token")) {
		return KindSession
	}
	return KindAPIKey
}

func (p *Profile) equal(q *Profile) bool {
	if p.Name != q.Name || p.ConfigPath != q.ConfigPath || len(p.Values) != len(q.Values) {
		return false
	}
	for k, v := range p.Values {
		if w, ok := q.Values[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// parseConfig reads an OCI config file's profiles. It accepts what the CLI
// writes: values containing '=', '#' or ';' (a pass phrase can), no
// continuation lines, keys case-insensitive, profile names case-sensitive.
func parseConfig(path string, data []byte) (map[string]*Profile, error) {
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
		return nil, &Error{Kind: ErrConfig, Path: path, Detail: "cannot parse OCI config file", Err: err}
	}
	defaults := map[string]string{}
	if s, err := f.GetSection(ini.DefaultSection); err == nil {
		for _, k := range s.Keys() {
			defaults[k.Name()] = strings.TrimSpace(k.Value())
		}
	}
	out := map[string]*Profile{}
	for _, s := range f.Sections() {
		name := s.Name()
		if name == ini.DefaultSection && len(s.Keys()) == 0 {
			continue
		}
		p := &Profile{Name: name, ConfigPath: path, Values: make(map[string]string, len(defaults)+len(s.Keys()))}
		for k, v := range defaults {
			p.Values[k] = v
		}
		for _, k := range s.Keys() {
			p.Values[k.Name()] = strings.TrimSpace(k.Value())
		}
		out[name] = p
	}
	return out, nil
}

// ReadProfile reads one profile from a config file once, without watching.
func ReadProfile(configPath, name string) (*Profile, error) {
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

func profileNotFound(configPath, name string, profiles map[string]*Profile) error {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	have := "it has no profiles"
	if len(names) > 0 {
		have = "it has " + strings.Join(names, ", ")
	}
	return &Error{
		Kind: ErrProfileNotFound, Profile: name, Path: configPath,
		Detail: fmt.Sprintf("no profile [%s] in %s (%s)", name, configPath, have),
		Hint:   fmt.Sprintf("run `oci session authenticate --profile-name %s` or name an existing profile", name),
	}
}

// readFile reads a file and turns the failure into an *Error an operator can act on.
func readFile(path, what string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return data, nil
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Error{Kind: ErrFileMissing, Path: path, Detail: what + " " + path + " does not exist", Err: err}
	case errors.Is(err, fs.ErrPermission):
		return nil, &Error{Kind: ErrPermission, Path: path, Detail: fmt.Sprintf("%s %s is not readable by uid %d", what, path, os.Getuid()),
			Hint: "make it readable by this user (in Docker, run the container as the file owner's uid)", Err: err}
	}
	return nil, &Error{Kind: ErrFileMissing, Path: path, Detail: "cannot read " + what + " " + path, Err: err}
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") || strings.HasPrefix(p, `~\`) {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// resolvePath finds the file a config value names. A relative path is taken
// against the config's folder and ~ against this user's home, as the CLI
// does. When the file is not there, the config was most likely written on
// another machine (/home/kali/.oci/...) and mounted here (/oci): then the
// file is looked for under the config's folder by each tail of the written
// path, longest first, so /home/kali/.oci/sessions/X/token is found as
// /oci/sessions/X/token. It returns the path used and whether it differs
// from the written one.
func resolvePath(configPath, written, what string) (path string, moved bool, err error) {
	if written == "" {
		return "", false, &Error{Kind: ErrConfig, Path: configPath, Detail: what + " is not set in the profile"}
	}
	dir := filepath.Dir(configPath)
	direct := expandHome(written)
	if !filepath.IsAbs(direct) && !looksAbsolute(direct) {
		direct = filepath.Join(dir, direct)
	}
	looked := []string{direct}
	if _, err := os.Stat(direct); err == nil || !errors.Is(err, fs.ErrNotExist) {
		// Present, or present but unreadable: the read will say which.
		return direct, false, nil
	}
	parts := splitAnyPath(written)
	for i := range parts {
		cand := filepath.Join(append([]string{dir}, parts[i:]...)...)
		if cand == direct || contains(looked, cand) {
			continue
		}
		looked = append(looked, cand)
		if st, err := os.Stat(cand); err == nil && !st.IsDir() {
			return cand, true, nil
		}
	}
	return "", false, &Error{
		Kind: ErrFileMissing, Path: written,
		Detail: fmt.Sprintf("%s %s named in %s was not found; looked at %s", what, written, configPath, strings.Join(looked, ", ")),
		Hint:   "mount the folder that holds it next to the config, or fix the path in the config",
	}
}

// splitAnyPath splits a path written on Linux, macOS or Windows into its
// components, dropping a home marker and a drive letter.
func splitAnyPath(p string) []string {
	fields := strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' })
	if len(fields) > 0 && (fields[0] == "~" || (len(fields[0]) == 2 && fields[0][1] == ':')) {
		fields = fields[1:]
	}
	out := fields[:0]
	for _, f := range fields {
		if f != "." && f != ".." {
			out = append(out, f)
		}
	}
	return out
}

// looksAbsolute recognises a Windows absolute path on any OS, so it is
// treated as written elsewhere and not joined to the config folder.
func looksAbsolute(p string) bool {
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') || strings.HasPrefix(p, `\\`)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
