package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ocisigner/ocisigner/signer"
)

// readFile reads a file and turns the failure into an *Error an operator can act on.
func readFile(path, what string) ([]byte, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, &signer.Error{Kind: signer.ErrConfig, Path: path, Detail: what + " " + path + " is a folder",
			Hint: "name the file in it (for the OCI config: " + filepath.Join(path, "config") + ")"}
	}
	data, err := os.ReadFile(path)
	if err == nil {
		return data, nil
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &signer.Error{Kind: signer.ErrFileMissing, Path: path, Detail: what + " " + path + " does not exist", Err: err}
	case errors.Is(err, fs.ErrPermission):
		return nil, &signer.Error{Kind: signer.ErrPermission, Path: path, Detail: fmt.Sprintf("%s %s is not readable by uid %d", what, path, os.Getuid()),
			Hint: "make it readable by this user (in Docker, run the container as the file owner's uid)", Err: err}
	}
	return nil, &signer.Error{Kind: signer.ErrFileMissing, Path: path, Detail: "cannot read " + what + " " + path, Err: err}
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") || strings.HasPrefix(p, `~\`) {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// resolvePath finds the file a profile's key names. A relative path is
// taken against the config's folder and ~ against this user's home, as the
// CLI does. When the file is not there, the config was most likely written
// on another machine (/home/kali/.oci/...) and its folder mounted here
// (/oci): then the file is looked for at one place only, the same file
// below the mounted folder (/oci/sessions/X/token for
// /home/kali/.oci/sessions/X/token). Never anywhere else: a shorter tail
// (/oci/oci_api_key.pem) is another profile's file, and signing with it
// would make one profile borrow another's key. It returns the path used
// and whether it differs from the written one.
func resolvePath(p *profile, key, what string) (path string, moved bool, err error) {
	written := p.Get(key)
	if written == "" {
		return "", false, &signer.Error{Kind: signer.ErrConfig, Path: p.ConfigPath, Detail: what + " is not set in the profile"}
	}
	direct := p.direct(written)
	if _, err := os.Stat(direct); err == nil || !errors.Is(err, fs.ErrNotExist) {
		// Present, or present but unreadable: the read will say which.
		return direct, false, nil
	}
	missing := &signer.Error{
		Kind: signer.ErrFileMissing, Path: written,
		Detail: fmt.Sprintf("%s %s named in %s does not exist", what, written, p.ConfigPath),
		Hint:   "fix the path in the config, or mount the folder that holds it as the config's folder",
	}
	cand, why := p.layout.mounted(written)
	if cand == "" || cand == direct {
		if why != "" {
			missing.Detail += " (" + why + ")"
		}
		return "", false, missing
	}
	if st, err := os.Stat(cand); err == nil && !st.IsDir() {
		return cand, true, nil
	}
	missing.Detail = fmt.Sprintf("%s %s named in %s does not exist, nor does %s, where the config's folder would hold it",
		what, written, p.ConfigPath, cand)
	return "", false, missing
}

// direct is where a written path lies on this machine taken as written.
func (p *profile) direct(written string) string { return directPath(p.ConfigPath, written) }

func directPath(configPath, written string) string {
	direct := expandHome(written)
	if !filepath.IsAbs(direct) && !looksAbsolute(direct) {
		direct = filepath.Join(filepath.Dir(configPath), direct)
	}
	return direct
}

// fileKeys are the profile keys that name files.
var fileKeys = []string{"key_file", "security_token_file", "pass_phrase_file", "delegation_token_file", "client_secret_file", "subject_token_file"}

// layout is what a config's paths say about the folder they were written
// in, so that a file named by a path written on another machine is found
// at the same place below the folder mounted here, and nowhere else.
type layout struct {
	dir string // the config's folder here
	// claims maps each place below dir to the written paths that lead
	// there: more than one, and none of them is the file's.
	claims map[string][]string
}

// newLayout studies every file path the profiles name.
func newLayout(configPath string, profiles map[string]*profile) *layout {
	l := &layout{dir: filepath.Dir(configPath), claims: map[string][]string{}}
	var written []string
	for _, p := range profiles {
		for _, k := range fileKeys {
			if v := p.Values[k]; v != "" && !slices.Contains(written, v) {
				written = append(written, v)
			}
		}
	}
	claim := func(place, w string) {
		if place != "" && !slices.Contains(l.claims[place], w) {
			l.claims[place] = append(l.claims[place], w)
		}
	}
	for _, w := range written {
		cand, _ := l.candidate(w)
		claim(cand, w)
		if d := directPath(configPath, w); strings.HasPrefix(d, l.dir+string(filepath.Separator)) {
			claim(d, w) // a file the config names where it is
		}
	}
	return l
}

// isWrittenElsewhere: an absolute path (of any OS) or one below ~, which
// may have been written on another machine.
func isWrittenElsewhere(w string) bool {
	return filepath.IsAbs(w) || looksAbsolute(w) || strings.HasPrefix(w, "/") || w == "~" || strings.HasPrefix(w, "~/") || strings.HasPrefix(w, `~\`)
}

// candidate is where a written path's file lies below the mounted folder:
// the part of the path below the folder the config was written in (see
// selfRooted), joined to the config's folder here.
func (l *layout) candidate(written string) (string, string) {
	if !isWrittenElsewhere(written) {
		return "", ""
	}
	parts := selfRooted(splitAnyPath(written))
	if parts == nil {
		return "", "it lies below no .oci or sessions folder, so ocisigner does not guess where it would be below " + l.dir +
			"; a path relative to the config's folder works wherever the folder is mounted"
	}
	if len(parts) == 0 {
		return "", ""
	}
	return filepath.Join(append([]string{l.dir}, parts...)...), ""
}

// selfRooted is the part of a path below the folder it says it was
// written in: the first .oci folder (where the OCI CLI keeps its config),
// or the folder holding sessions/<profile>/ (what `oci session
// authenticate` writes next to the config). nil when it says neither.
func selfRooted(parts []string) []string {
	if i := slices.Index(parts, ".oci"); i >= 0 {
		return parts[i+1:]
	}
	for j := len(parts) - 3; j >= 0; j-- {
		if parts[j] == "sessions" {
			return parts[j:]
		}
	}
	return nil
}

// mounted is the one place below the mounted folder where the file a
// written path names may be, or "" and why not.
func (l *layout) mounted(written string) (string, string) {
	if l == nil {
		return "", ""
	}
	cand, why := l.candidate(written)
	if cand == "" {
		return "", why
	}
	var others []string
	for _, w := range l.claims[cand] {
		if w != written {
			others = append(others, w)
		}
	}
	if len(others) > 0 {
		return "", fmt.Sprintf("%s is where the config's %s lies, so it is not looked for there", cand, strings.Join(others, ", "))
	}
	return cand, ""
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

// withProfile returns err with the profile name filled in when err is a
// *signer.Error without one.
func withProfile(err error, profile string) error {
	var e *signer.Error
	if errors.As(err, &e) && e.Profile == "" {
		c := *e
		c.Profile = profile
		return &c
	}
	return err
}

// stamp identifies a version of a file without reading it: the same file
// (inode), size and modification time.
type stamp = os.FileInfo

func stat(paths []string) ([]stamp, bool) {
	out := make([]stamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, false
		}
		out[i] = fi
	}
	return out, true
}

func sameStamps(a, b []stamp) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}

// watch remembers the versions of the files a fetch last read, so that the
// cache can tell cheaply (a stat per file) whether they changed since. A
// fetch whose files changed while it read them leaves nothing remembered:
// the next call reads again.
type watch struct {
	mu     sync.Mutex
	paths  []string
	stamps []stamp
}

// read stamps paths, runs read, and remembers the stamps if the files
// stayed the same meanwhile.
func (w *watch) read(paths []string, read func() error) error {
	before, ok := stat(paths)
	err := read()
	after, ok2 := stat(paths)
	w.mu.Lock()
	w.paths = paths
	w.stamps = nil
	if ok && ok2 && sameStamps(before, after) {
		w.stamps = before
	}
	w.mu.Unlock()
	return err
}

// changed reports whether the files differ from the last read.
func (w *watch) changed() bool {
	w.mu.Lock()
	paths, stamps := w.paths, w.stamps
	w.mu.Unlock()
	if stamps == nil {
		return true
	}
	now, ok := stat(paths)
	return !ok || !sameStamps(stamps, now)
}
