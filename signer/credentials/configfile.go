package credentials

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/ocisigner/ocisigner/signer"
)

// ConfigFile is a watched ~/.oci/config. Profiles added to it (`oci session
// authenticate --profile-name NEW` appends one) or changed in it are usable
// on the next call, without a restart; each profile's credentials are a
// Source of their own, fetched ahead of the first request. It is safe for
// concurrent use.
type ConfigFile struct {
	path     string
	opts     options
	loop     *Loop
	ownsLoop bool
	file     *cache[*configState] // the parsed file, read again when it changes
	fetch    *configFetcher
}

type configState struct {
	entries map[string]*profileEntry
}

type profileEntry struct {
	profile *Profile
	src     signer.Source
	c       *cache[*signer.Credentials] // nil for a profile that cannot work at all
}

// OpenConfig reads the config file at path and watches it from then on.
// It fails only if the file cannot be read or parsed now.
func OpenConfig(path string, opts ...Option) (*ConfigFile, error) {
	o := newOptions(opts)
	loop, owns := o.ownLoop()
	return openConfig(path, o, loop, owns)
}

func openConfig(path string, o options, loop *Loop, owns bool) (*ConfigFile, error) {
	c := &ConfigFile{path: path, opts: o, loop: loop, ownsLoop: owns}
	c.fetch = &configFetcher{cf: c}
	// Not in the loop: the file is looked at when used.
	c.file = &cache[*configState]{name: path, f: c.fetch, clock: o.clock, log: o.log}
	if _, err := c.file.get(context.Background()); err != nil {
		if owns {
			loop.Close()
		}
		return nil, err
	}
	return c, nil
}

// configFetcher reads and parses the file. Profiles whose values did not
// change keep their source, and with it their cached credentials.
type configFetcher struct {
	cf  *ConfigFile
	w   watch
	mu  sync.Mutex
	cur *configState
}

func (f *configFetcher) fetch(context.Context, bool) (*entry[*configState], error) {
	c := f.cf
	var profiles map[string]*Profile
	err := f.w.read([]string{c.path}, func() error {
		data, err := readFile(c.path, "OCI config file")
		if err == nil {
			profiles, err = parseConfig(c.path, data)
		}
		return err
	})
	if err != nil {
		var e *signer.Error
		if errors.As(err, &e) && e.Kind == signer.ErrFileMissing && e.Hint == "" {
			e.Hint = "create it with `oci setup config` (an API key) or `oci session authenticate` (a session token), " +
				"or name it with --config or OCI_CLI_CONFIG_FILE; with docker compose, OCI_CONFIG_DIR names the folder mounted at /oci (default ~/.oci)"
		}
		return nil, err
	}
	if ov := c.opts.override; ov.profile != "" {
		if p, ok := profiles[ov.profile]; ok {
			profiles[ov.profile] = p.overridden(ov.region, ov.kind)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.cur
	next := &configState{entries: make(map[string]*profileEntry, len(profiles))}
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
		next.entries[name] = c.newProfileEntry(p)
	}
	if prev != nil {
		for name, old := range prev.entries {
			if next.entries[name] != old && old.c != nil {
				c.loop.remove(old.c) // changed or removed: no more refreshes
			}
		}
		if len(added) > 0 || len(changed) > 0 {
			sort.Strings(added)
			sort.Strings(changed)
			c.opts.log.Info("OCI config file reloaded", "path", c.path, "added", added, "changed", changed)
		}
	}
	f.cur = next
	return &entry[*configState]{value: next, changed: f.w.changed}, nil
}

// newProfileEntry picks the principal a profile describes.
func (c *ConfigFile) newProfileEntry(p *Profile) *profileEntry {
	pe := &profileEntry{profile: p}
	o := &c.opts
	var f fetcher[*signer.Credentials]
	remote := false
	kind := p.Kind()
	if p.Name == o.secretsFor && o.tokenValue != "" && (kind == signer.KindAPIKey || kind == signer.KindSession) {
		kind = signer.KindSession // the token given as a value makes it a session profile
	}
	switch kind {
	case signer.KindSession:
		f = &sessionFetcher{p: p, o: o}
	case signer.KindInstance:
		f, remote = newInstanceFetcher(o), true
	case signer.KindResource:
		rf, err := newResourceFetcher(o)
		if err != nil {
			pe.src = errorSource{withProfile(err, p.Name)}
			return pe
		}
		f = rf
	case signer.KindWorkload:
		wf, err := newWorkloadFetcher(o)
		if err != nil {
			pe.src = errorSource{withProfile(err, p.Name)}
			return pe
		}
		f, remote = wf, true
	case signer.KindTokenExchange:
		tf, err := newProfileTokenExchange(p, o)
		if err != nil {
			pe.src = errorSource{withProfile(err, p.Name)}
			return pe
		}
		f, remote = tf, true
	default:
		f = &apiKeyFetcher{p: p, o: o}
	}
	pe.c = newCache(p.Name, f, o, c.loop, remote)
	pe.src = cacheSource{pe.c}
	return pe
}

// cacheSource is a profile's cache as a signer.Source.
type cacheSource struct{ c *cache[*signer.Credentials] }

func (s cacheSource) Credentials(ctx context.Context) (*signer.Credentials, error) {
	return s.c.get(ctx)
}

// Path returns the config file's path.
func (c *ConfigFile) Path() string { return c.path }

func (c *ConfigFile) state() (*configState, error) {
	return c.file.get(context.Background())
}

// Names lists the profiles in the file, sorted.
func (c *ConfigFile) Names() []string {
	st, err := c.state()
	if err != nil {
		return nil
	}
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
	st, err := c.state()
	if err != nil {
		return nil, withProfile(err, name)
	}
	if e, ok := st.entries[name]; ok {
		return e, nil
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
func (c *ConfigFile) Source(name string) signer.Source {
	return profileSource{c: c, name: name}
}

type profileSource struct {
	c    *ConfigFile
	name string
}

func (s profileSource) Credentials(ctx context.Context) (*signer.Credentials, error) {
	e, err := s.c.entry(s.name)
	if err != nil {
		return nil, err
	}
	return e.src.Credentials(ctx)
}

// Close stops the background work of every profile (and the loop, if the
// ConfigFile started it).
func (c *ConfigFile) Close() error {
	if st := c.file.st.Load(); st != nil && st.e != nil {
		for _, e := range st.e.value.entries {
			if e.c != nil {
				c.loop.remove(e.c)
			}
		}
	}
	if c.ownsLoop {
		return c.loop.Close()
	}
	return nil
}
