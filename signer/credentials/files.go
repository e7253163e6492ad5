package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ocisigner/ocisigner/signer"
)

// readFile reads a file and turns the failure into an *Error an operator can act on.
func readFile(path, what string) ([]byte, error) {
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
		return "", false, &signer.Error{Kind: signer.ErrConfig, Path: configPath, Detail: what + " is not set in the profile"}
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
	return "", false, &signer.Error{
		Kind: signer.ErrFileMissing, Path: written,
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

// writeFileAtomic replaces path with data: a reader sees the old file or the
// new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
