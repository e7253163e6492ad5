package signer

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
)

// ConfigFile is a watched ~/.oci/config. Profiles added to it (`oci session
// authenticate --profile-name NEW` appends one) or changed in it are usable
// on the next call, without a restart. It is safe for concurrent use.
type ConfigFile struct {
	path string
	opts options

	mu    sync.Mutex // serialises reloads
	state atomic.Pointer[configState]
}

type configState struct {
	stamps  []fileStamp
	entries map[string]*profileEntry
	err     error // why the last reload failed, if it did
}

type profileEntry struct {
	profile *Profile
	src     Source
}

// OpenConfig reads the config file at path and watches it from then on.
// It fails only if the file cannot be read or parsed now.
func OpenConfig(path string, opts ...Option) (*ConfigFile, error) {
	c := &ConfigFile{path: path, opts: newOptions(opts)}
	st := c.reload(nil)
	c.state.Store(st)
	if st.err != nil {
		return nil, st.err
	}
	return c, nil
}

// Path returns the config file's path.
func (c *ConfigFile) Path() string { return c.path }

func (c *ConfigFile) current() *configState {
	st := c.state.Load()
	if now, ok := stat([]string{c.path}); ok && sameStamps(st.stamps, now) {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.state.Load()
	if now, ok := stat([]string{c.path}); ok && sameStamps(st.stamps, now) {
		return st
	}
	next := c.reload(st)
	c.state.Store(next)
	return next
}

// reload rereads the file. Profiles whose values did not change keep their
// source, and with it its cached credentials; a file that cannot be read
// now (mid-rename, say) leaves the last good profiles in place.
func (c *ConfigFile) reload(prev *configState) *configState {
	before, _ := stat([]string{c.path})
	data, err := readFile(c.path, "OCI config file")
	var profiles map[string]*Profile
	if err == nil {
		profiles, err = parseConfig(c.path, data)
	}
	if err != nil {
		if prev == nil {
			return &configState{err: err}
		}
		c.opts.log.Warn("OCI config file is not readable now; keeping the profiles read before", "path", c.path, "error", err.Error())
		return &configState{entries: prev.entries, err: err} // nil stamps: retry next call
	}
	next := &configState{entries: make(map[string]*profileEntry, len(profiles))}
	if after, ok := stat([]string{c.path}); ok && sameStamps(before, after) {
		next.stamps = before
	}
	var added, changed []string
	for name, p := range profiles {
		if prev != nil {
			if old, ok := prev.entries[name]; ok && old.profile.equal(p) {
				next.entries[name] = old
				continue
			} else if ok {
				changed = append(changed, name)
			} else {
				added = append(added, name)
			}
		}
		next.entries[name] = &profileEntry{profile: p, src: newProfileSource(p, c.opts)}
	}
	if prev != nil {
		for name, old := range prev.entries {
			if next.entries[name] != old {
				closeSource(old.src) // changed or removed: its refresh loop must not outlive it
			}
		}
	}
	if prev != nil && (len(added) > 0 || len(changed) > 0) {
		sort.Strings(added)
		sort.Strings(changed)
		c.opts.log.Info("OCI config file reloaded", "path", c.path, "added", added, "changed", changed)
	}
	return next
}

// Names lists the profiles in the file, sorted.
func (c *ConfigFile) Names() []string {
	st := c.current()
	out := make([]string, 0, len(st.entries))
	for n := range st.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Profile returns the named profile as the file says now.
func (c *ConfigFile) Profile(name string) (*Profile, error) {
	e, err := c.entry(name)
	if err != nil {
		return nil, err
	}
	return e.profile, nil
}

func (c *ConfigFile) entry(name string) (*profileEntry, error) {
	st := c.current()
	if e, ok := st.entries[name]; ok {
		return e, nil
	}
	if st.entries == nil && st.err != nil {
		return nil, withProfile(st.err, name)
	}
	profiles := make(map[string]*Profile, len(st.entries))
	for n, e := range st.entries {
		profiles[n] = e.profile
	}
	return nil, profileNotFound(c.path, name, profiles)
}

// Source returns a Source for the named profile that follows the file: it
// reports ErrProfileNotFound while the profile is absent and picks up
// changes to it.
func (c *ConfigFile) Source(name string) Source {
	return profileSource{c: c, name: name}
}

type profileSource struct {
	c    *ConfigFile
	name string
}

func (s profileSource) Credentials(ctx context.Context) (*Credentials, error) {
	e, err := s.c.entry(s.name)
	if err != nil {
		return nil, err
	}
	return e.src.Credentials(ctx)
}

// newProfileSource picks the principal a profile describes.
func newProfileSource(p *Profile, o options) Source {
	switch p.Kind() {
	case KindSession:
		disk := newFileSource(p.Name, sessionLoader(p, o), o)
		if !o.refresh {
			return disk
		}
		return newSessionRefresher(p.Name, disk, o)
	case KindInstance:
		return newInstancePrincipal(o)
	case KindResource:
		src, err := newResourcePrincipal(o)
		if err != nil {
			return errorSource{withProfile(err, p.Name)}
		}
		return src
	case KindWorkload:
		src, err := newWorkloadIdentity(o)
		if err != nil {
			return errorSource{withProfile(err, p.Name)}
		}
		return src
	}
	return newFileSource(p.Name, apiKeyLoader(p, o), o)
}

// closeSource stops a source's background work, if it has any.
func closeSource(s Source) {
	if c, ok := s.(interface{ Close() }); ok {
		c.Close()
	}
}

// Close stops the background work (token refresh) of every profile.
func (c *ConfigFile) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.state.Load(); st != nil {
		for _, e := range st.entries {
			closeSource(e.src)
		}
	}
}

type errorSource struct{ err error }

func (s errorSource) Credentials(context.Context) (*Credentials, error) { return nil, s.err }

// NotFound is a Source for a profile that does not exist; why says where
// profiles come from instead.
func NotFound(profile, why string) Source {
	return errorSource{&Error{Kind: ErrProfileNotFound, Profile: profile, Detail: "no profile " + profile + ": " + why}}
}
