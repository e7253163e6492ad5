package credentials

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/ocisigner/ocisigner/signer"
)

// configFile is a watched ~/.oci/config. Profiles added to it (`oci session
// authenticate --profile-name NEW` appends one) or changed in it are usable
// on the next call, without a restart; each profile's credentials are a
// source of their own, fetched ahead of the first request. It is safe for
// concurrent use.
type configFile struct {
	path  string
	opts  options
	loop  *refreshLoop
	file  *cache[*configState] // the parsed file, read again when it changes
	fetch *configFetcher
}

type configState struct {
	entries map[string]*profileEntry
}

type profileEntry struct {
	profile *profile
	src     signer.Source
	c       *cache[*signer.Credentials] // nil for a profile that cannot work at all
}

// openConfig reads the config file at path and watches it from then on;
// its profiles refresh in loop. It fails only if the file cannot be read or
// parsed now.
func openConfig(path string, o options, loop *refreshLoop) (*configFile, error) {
	c := &configFile{path: path, opts: o, loop: loop}
	c.fetch = &configFetcher{cf: c}
	// Not in the loop: the file is looked at when used.
	c.file = &cache[*configState]{name: path, f: c.fetch, clock: o.clock, log: o.log}
	if _, err := c.file.get(context.Background()); err != nil {
		return nil, err
	}
	return c, nil
}

// configFetcher reads and parses the file. Profiles whose values did not
// change keep their source, and with it their cached credentials.
type configFetcher struct {
	cf  *configFile
	w   watch
	mu  sync.Mutex
	cur *configState
}

func (f *configFetcher) fetch(context.Context, bool) (*entry[*configState], error) {
	c := f.cf
	var profiles map[string]*profile
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

// newProfileEntry gives a profile its source.
func (c *configFile) newProfileEntry(p *profile) *profileEntry {
	pe := &profileEntry{profile: p}
	f, remote, err := newFetcher(profileKind(p, &c.opts), p, &c.opts)
	if err != nil {
		pe.src = errorSource{withProfile(err, p.Name)}
		return pe
	}
	src := newSource(p.Name, f, &c.opts, c.loop, remote)
	pe.src, pe.c = src, src.c
	return pe
}

func (c *configFile) state() (*configState, error) {
	return c.file.get(context.Background())
}

// names lists the profiles in the file, sorted.
func (c *configFile) names() []string {
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

// profile returns the named profile as the file says now.
func (c *configFile) profile(name string) (*profile, error) {
	e, err := c.entry(name)
	if err != nil {
		return nil, err
	}
	return e.profile, nil
}

func (c *configFile) entry(name string) (*profileEntry, error) {
	st, err := c.state()
	if err != nil {
		return nil, withProfile(err, name)
	}
	if e, ok := st.entries[name]; ok {
		return e, nil
	}
	profiles := make(map[string]*profile, len(st.entries))
	for n, e := range st.entries {
		profiles[n] = e.profile
	}
	return nil, profileNotFound(c.path, name, profiles)
}

// source returns the named profile's credentials as the file says: it
// reports ErrProfileNotFound while the profile is absent and picks up
// changes to it.
func (c *configFile) source(name string) signer.Source {
	return profileSource{c: c, name: name}
}

type profileSource struct {
	c    *configFile
	name string
}

func (s profileSource) Credentials(ctx context.Context) (*signer.Credentials, error) {
	e, err := s.c.entry(s.name)
	if err != nil {
		return nil, err
	}
	return e.src.Credentials(ctx)
}
