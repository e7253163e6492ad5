package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

type stage struct {
	image, name string
	ins         []instruction
}

// parseDockerfile splits a Dockerfile into stages. It understands what the
// Dockerfile here uses: comments and parser directives, backslash
// continuations (with comment lines inside them), FROM ... AS name.
func parseDockerfile(text string) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{}
			switch {
			case len(f) == 1:
				st.image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.image, st.name = f[0], f[2]
			default:
				return fmt.Errorf("line %d: cannot read FROM %q", start, in.args)
			}
			stages = append(stages, st)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				return fmt.Errorf("line %d: %s before the first FROM", start, in.cmd)
			}
			return nil
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		return nil
	}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() > 0) {
			continue // comments, parser directives; comments and blank lines inside continuations
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, cont := strings.CutSuffix(line, `\`); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, errors.New("dangling line continuation at end of file")
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

// ignoreRule is one .dockerignore line, with the semantics of Docker's
// pattern matcher: Go filepath.Match syntax plus "**" for any number of
// directories, "!" to re-include, last match wins, and a pattern that
// matches a parent directory matches everything below it.
type ignoreRule struct {
	pattern string
	negate  bool
	re      *regexp.Regexp
}

func parseDockerignore(text string) ([]ignoreRule, error) {
	var rules []ignoreRule
	for _, raw := range strings.Split(text, "\n") {
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		r := ignoreRule{pattern: l}
		if rest, ok := strings.CutPrefix(l, "!"); ok {
			r.negate, l = true, strings.TrimSpace(rest)
		}
		l = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(l)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(l); i++ {
			switch c := l[i]; c {
			case '*':
				if i+1 < len(l) && l[i+1] == '*' {
					i++
					if i+1 < len(l) && l[i+1] == '/' {
						i++
					}
					if i+1 >= len(l) {
						re.WriteString(".*")
					} else {
						re.WriteString("(.*/)?")
					}
				} else {
					re.WriteString("[^/]*")
				}
			case '?':
				re.WriteString("[^/]")
			case '[':
				j := strings.IndexByte(l[i:], ']')
				if j < 0 {
					return nil, fmt.Errorf("unclosed [ in %q", r.pattern)
				}
				re.WriteString(l[i : i+j+1])
				i += j
			case '\\':
				if i+1 < len(l) {
					i++
					re.WriteString(regexp.QuoteMeta(string(l[i])))
				}
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		var err error
		if r.re, err = regexp.Compile(re.String()); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", r.pattern, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// dockerIgnored reports whether the build context leaves out path (slash
// separated, relative to the context root).
func dockerIgnored(rules []ignoreRule, path string) bool {
	parts := strings.Split(path, "/")
	ignored := false
	for _, r := range rules {
		for i := range parts {
			if r.re.MatchString(strings.Join(parts[:i+1], "/")) {
				ignored = !r.negate
				break
			}
		}
	}
	return ignored
}

// recipe is deploy/Dockerfile and .dockerignore, parsed, plus the files a
// build of ./cmd/ocisigner needs from the context.
type recipe struct {
	stages     []stage
	ignore     []ignoreRule
	buildFiles []string // go.mod, go.sum, every non-test Go file outside deploy/
	goMinor    int      // the go directive's minor version in go.mod
}

func (r *recipe) final() stage { return r.stages[len(r.stages)-1] }

func (r *recipe) find(s stage, cmd string, match func(args string) bool) (int, instruction) {
	for i, in := range s.ins {
		if in.cmd == cmd && (match == nil || match(in.args)) {
			return i, in
		}
	}
	return -1, instruction{}
}

// goBuild returns the build stage and the index of its `go build` RUN.
func (r *recipe) goBuild() (stage, int, instruction, error) {
	for _, s := range r.stages[:len(r.stages)-1] {
		if i, in := r.find(s, "RUN", func(a string) bool { return strings.Contains(a, "go build") }); i >= 0 {
			return s, i, in, nil
		}
	}
	return stage{}, -1, instruction{}, errors.New("no RUN go build in a build stage")
}

var goBuildOutput = regexp.MustCompile(`\s-o\s+(\S+)`)

// copyFrom parses `COPY --from=<stage> <src> <dst>`.
func copyFrom(args string) (from, src, dst string, ok bool) {
	f := strings.Fields(args)
	var rest []string
	for _, a := range f {
		if v, isFrom := strings.CutPrefix(a, "--from="); isFrom {
			from = v
		} else if !strings.HasPrefix(a, "--") {
			rest = append(rest, a)
		}
	}
	if from == "" || len(rest) != 2 {
		return "", "", "", false
	}
	return from, rest[0], rest[1], true
}

func execForm(args string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, fmt.Errorf("%q is not exec (JSON array) form: %w", args, err)
	}
	return v, nil
}

// envSets reports whether an ENV instruction sets key to value (either form).
func envSets(args, key, value string) bool {
	if f := strings.Fields(args); len(f) == 2 && !strings.Contains(f[0], "=") {
		return f[0] == key && f[1] == value
	}
	return slices.Contains(strings.Fields(args), key+"="+value)
}

var (
	goImage      = regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$`)
	versionStamp = regexp.MustCompile(`-X\s+'?main\.version=\$\{?VERSION\}?`)
	// The distroless images with glibc and libssl3 (libcrypto.so.3): base,
	// and cc, which adds libstdc++ to it. Not static or base-nossl.
	libcryptoImage = regexp.MustCompile(`^gcr\.io/distroless/(?:base|cc)-debian(\d+):([a-z0-9.-]+)(@sha256:[0-9a-f]{64})?$`)
	// opensslProof is a run of the built binary that fails the build
	// unless it signs with OpenSSL.
	opensslProof = regexp.MustCompile(`(\S+) version \| grep -q "?RSA: openssl`)
)

// debianReleases are the Debian releases golang images are tagged with.
var debianReleases = map[string]string{"bullseye": "11", "bookworm": "12", "trixie": "13"}

// cgoSetting is what CGO_ENABLED the go build at index i of s runs with:
// set inline in its RUN, else the last ENV before it; "" if neither.
func cgoSetting(s stage, i int) string {
	if m := regexp.MustCompile(`(?:^|\s)CGO_ENABLED=(\S+)\s+go build`).FindStringSubmatch(s.ins[i].args); m != nil {
		return m[1]
	}
	v := ""
	for _, e := range s.ins[:i] {
		if e.cmd != "ENV" {
			continue
		}
		for _, want := range []string{"0", "1"} {
			if envSets(e.args, "CGO_ENABLED", want) {
				v = want
			}
		}
	}
	return v
}

var recipeChecks = []namedCheck[*recipe]{
	{"multi-stage build", func(r *recipe) error {
		if len(r.stages) < 2 {
			return fmt.Errorf("%d stage(s): the toolchain must not ship in the image", len(r.stages))
		}
		names := map[string]bool{}
		for _, s := range r.stages[:len(r.stages)-1] {
			names[s.name] = s.name != ""
		}
		if i, _ := r.find(r.final(), "COPY", func(a string) bool {
			from, _, _, ok := copyFrom(a)
			return ok && names[from]
		}); i < 0 {
			return errors.New("the final stage copies nothing from a named build stage")
		}
		return nil
	}},
	{"builder is a pinned Go toolchain", func(r *recipe) error {
		m := goImage.FindStringSubmatch(r.stages[0].image)
		if m == nil {
			return fmt.Errorf("builder %q is not an exact golang:X.Y.Z tag", r.stages[0].image)
		}
		if minor, _ := strconv.Atoi(m[2]); m[1] != "1" || minor < r.goMinor {
			return fmt.Errorf("builder %q is older than go.mod's go 1.%d", r.stages[0].image, r.goMinor)
		}
		return nil
	}},
	{"cgo build against libcrypto, trimmed, stamped", func(r *recipe) error {
		var p problems
		s, i, in, err := r.goBuild()
		if err != nil {
			return err
		}
		if v := cgoSetting(s, i); v != "1" {
			p.addf("go build runs with CGO_ENABLED=%q, want 1: without cgo the binary signs with crypto/rsa at 3x the CPU", v)
		}
		if j, _ := r.find(stage{ins: s.ins[:i]}, "RUN", func(a string) bool {
			return strings.Contains(a, "apt-get install") && slices.Contains(strings.Fields(a), "libssl-dev")
		}); j < 0 {
			p.addf("no apt-get install libssl-dev before go build: cgo needs OpenSSL's headers")
		}
		out := goBuildOutput.FindStringSubmatch(in.args)
		proven := false
		for _, e := range s.ins[i:] {
			if m := opensslProof.FindStringSubmatch(e.args); e.cmd == "RUN" && m != nil && out != nil && m[1] == out[1] {
				proven = true
			}
		}
		if !proven {
			p.addf("the build does not run the built binary's version and grep for \"RSA: openssl\": a build that lost OpenSSL would pass")
		}
		if !strings.Contains(in.args, "-trimpath") {
			p.addf("go build lacks -trimpath")
		}
		if !versionStamp.MatchString(in.args) {
			p.addf("go build does not stamp -X main.version=${VERSION}")
		}
		if !slices.Contains(strings.Fields(in.args), "./cmd/ocisigner") {
			p.addf("go build does not build ./cmd/ocisigner")
		}
		if j, _ := r.find(stage{ins: s.ins[:i]}, "ARG", func(a string) bool {
			name, _, _ := strings.Cut(a, "=")
			return name == "VERSION"
		}); j < 0 {
			p.addf("ARG VERSION is not declared before go build")
		}
		return p.err()
	}},
	{"module download layer cached", func(r *recipe) error {
		s, build, _, err := r.goBuild()
		if err != nil {
			return err
		}
		mods, _ := r.find(s, "COPY", func(a string) bool {
			f := strings.Fields(a)
			return slices.Contains(f, "go.mod") && slices.Contains(f, "go.sum") && !slices.Contains(f, ".")
		})
		dl, _ := r.find(s, "RUN", func(a string) bool { return strings.Contains(a, "go mod download") })
		all, _ := r.find(s, "COPY", func(a string) bool { return strings.HasPrefix(strings.Join(strings.Fields(a), " "), ". ") })
		if mods < 0 || dl < 0 || all < 0 || !(mods < dl && dl < all && all < build) {
			return fmt.Errorf("want COPY go.mod go.sum, RUN go mod download, COPY . ., go build in that order (indexes %d %d %d %d)", mods, dl, all, build)
		}
		return nil
	}},
	{"runtime is distroless with the builder's glibc and libcrypto", func(r *recipe) error {
		img := r.final().image
		m := libcryptoImage.FindStringSubmatch(img)
		if m == nil || m[2] == "latest" {
			return fmt.Errorf("final base %q: want a pinned gcr.io/distroless/base-debianN (glibc and libssl3 for the cgo binary)", img)
		}
		g := goImage.FindStringSubmatch(r.stages[0].image)
		if g == nil || debianReleases[strings.TrimPrefix(g[4], "-")] != m[1] {
			return fmt.Errorf("builder %q and runtime %q are not the same Debian release: the binary needs the glibc and libcrypto it was linked against", r.stages[0].image, img)
		}
		return nil
	}},
	{"final image runs as non-root", func(r *recipe) error {
		user := ""
		for _, in := range r.final().ins {
			if in.cmd == "USER" {
				user = in.args
			}
		}
		name, _, _ := strings.Cut(user, ":")
		if name == "" || name == "root" || name == "0" {
			return fmt.Errorf("final USER %q: must be a non-root user", user)
		}
		return nil
	}},
	{"binary and entrypoint", func(r *recipe) error {
		var p problems
		_, _, build, err := r.goBuild()
		if err != nil {
			return err
		}
		out := goBuildOutput.FindStringSubmatch(build.args)
		if out == nil {
			return errors.New("go build has no -o")
		}
		if i, _ := r.find(r.final(), "COPY", func(a string) bool {
			_, src, dst, ok := copyFrom(a)
			return ok && src == out[1] && dst == signerBinary
		}); i < 0 {
			p.addf("final stage does not COPY the built %s to %s", out[1], signerBinary)
		}
		want := map[string][]string{"ENTRYPOINT": {signerBinary}, "CMD": {"serve"}}
		for _, cmd := range []string{"ENTRYPOINT", "CMD"} {
			i, in := r.find(r.final(), cmd, nil)
			if i < 0 {
				p.addf("final stage has no %s", cmd)
				continue
			}
			got, err := execForm(in.args)
			if err != nil || !slices.Equal(got, want[cmd]) {
				p.addf("%s %s, want %q (%v)", cmd, in.args, want[cmd], err)
			}
		}
		return p.err()
	}},
	{"ports exposed", func(r *recipe) error {
		var ports []string
		for _, in := range r.final().ins {
			if in.cmd == "EXPOSE" {
				ports = append(ports, strings.Fields(in.args)...)
			}
		}
		for _, want := range []int{signerPort, adminPort} {
			if !slices.Contains(ports, strconv.Itoa(want)) {
				return fmt.Errorf("EXPOSE %v lacks %d", ports, want)
			}
		}
		return nil
	}},
	{"build context keeps the sources", func(r *recipe) error {
		var p problems
		if len(r.buildFiles) < 3 {
			p.addf("found only %v to build from", r.buildFiles)
		}
		for _, f := range r.buildFiles {
			if dockerIgnored(r.ignore, f) {
				p.addf(".dockerignore leaves out %s, which the build needs", f)
			}
		}
		return p.err()
	}},
	{"build context leaves out VCS and credentials", func(r *recipe) error {
		var p problems
		for _, f := range []string{
			".git/config", ".oci/config", ".oci/sessions/DEFAULT/token", ".env",
			"oci_api_key.pem", "signer/testdata/key.pem", "deploy/Dockerfile", "docker-compose.yml",
		} {
			if !dockerIgnored(r.ignore, f) {
				p.addf(".dockerignore lets %s into the build context", f)
			}
		}
		return p.err()
	}},
}

var goDirective = regexp.MustCompile(`(?m)^go\s+1\.(\d+)`)

// buildInputs lists go.mod, go.sum, and every file of this module that
// `go build ./cmd/ocisigner` reads (go list -deps, with and without cgo):
// the Go and cgo sources of the packages the binary imports and the files
// they //go:embed. Test-only packages (signertest, extproctest, ...) are
// not among them, so their fixtures may stay out of the build context.
func buildInputs(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{"go.mod": true, "go.sum": true}
	files := []string{"go.mod", "go.sum"}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, cgo := range []string{"1", "0"} {
		cmd := exec.Command("go", "list", "-deps", "-f",
			`{{if not .Standard}}{{.Dir}}|{{join .GoFiles ","}},{{join .CgoFiles ","}},{{join .HFiles ","}},{{join .CFiles ","}}|{{join .EmbedFiles ","}}{{end}}`, "./cmd/ocisigner")
		cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "CGO_ENABLED="+cgo)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps ./cmd/ocisigner: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			dir, rest, ok := strings.Cut(line, "|")
			if !ok || !strings.HasPrefix(dir, root+string(filepath.Separator)) && dir != root {
				continue // another module's package
			}
			srcs, embeds, _ := strings.Cut(rest, "|")
			for _, f := range append(strings.Split(srcs, ","), strings.Split(embeds, ",")...) {
				if f == "" {
					continue
				}
				rel, _ := filepath.Rel(root, filepath.Join(dir, f))
				if rel = filepath.ToSlash(rel); !seen[rel] {
					seen[rel] = true
					files = append(files, rel)
				}
			}
		}
	}
	if len(files) < 20 {
		t.Fatalf("the binary builds from only %v", files)
	}
	return files
}

func loadRecipe(dockerfile, dockerignore, gomod string, files []string) (*recipe, error) {
	stages, err := parseDockerfile(dockerfile)
	if err != nil {
		return nil, fmt.Errorf("Dockerfile: %w", err)
	}
	rules, err := parseDockerignore(dockerignore)
	if err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	m := goDirective.FindStringSubmatch(gomod)
	if m == nil {
		return nil, errors.New("go.mod has no go directive")
	}
	minor, _ := strconv.Atoi(m[1])
	return &recipe{stages: stages, ignore: rules, buildFiles: files, goMinor: minor}, nil
}

type recipeFiles struct{ dockerfile, dockerignore, gomod string }

func readRecipeFiles(t *testing.T) recipeFiles {
	return recipeFiles{
		dockerfile:   readRepoFile(t, "deploy/Dockerfile"),
		dockerignore: readRepoFile(t, ".dockerignore"),
		gomod:        readRepoFile(t, "go.mod"),
	}
}

// TestDockerfile parses deploy/Dockerfile and .dockerignore and runs every
// check.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	f := readRecipeFiles(t)
	r, err := loadRecipe(f.dockerfile, f.dockerignore, f.gomod, buildInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	runChecks(t, recipeChecks, r, true)
}

// TestDockerignoreMatcher pins the matcher to Docker's semantics on the
// cases the checks rely on.
func TestDockerignoreMatcher(t *testing.T) {
	t.Parallel()
	rules, err := parseDockerignore("# comment\n.git\n**/*.pem\ndeploy\n*.md\n!README.md\n/dist\nsigner/testdata\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{".git", true},
		{".git/config", true},
		{".gitignore", false},
		{"key.pem", true},
		{"a/b/c/key.pem", true},
		{"deploy/Dockerfile", true},
		{"deployer/x.go", false},
		{"NOTES.md", true},
		{"README.md", false},
		{"docs/a.md", false}, // "*.md" is anchored at the context root
		{"dist/ocisigner", true},
		{"signer/testdata/k", true},
		{"signer/sign.go", false},
		{"go.mod", false},
	} {
		if got := dockerIgnored(rules, tc.path); got != tc.want {
			t.Errorf("ignored(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

const (
	buildStage   = "FROM golang:1.26.8-bookworm AS build"
	runtimeStage = "FROM gcr.io/distroless/base-debian12:nonroot"
	buildCheck   = "cgo build against libcrypto, trimmed, stamped"
	runtimeCheck = "runtime is distroless with the builder's glibc and libcrypto"
)

var dockerfileMutations = []mutation{
	{"instruction before FROM", replaceFirst(buildStage+"\n", ""), ""},
	{"continuation swallows the runtime FROM", replaceFirst(`grep -q "RSA: openssl 3\."`+"\n", `grep -q "RSA: openssl 3\." \`+"\n"), "multi-stage build"},
	{"cgo off", replaceFirst("CGO_ENABLED=1", "CGO_ENABLED=0"), buildCheck},
	{"cgo off for go build alone", replaceFirst("    go build -trimpath", "    CGO_ENABLED=0 go build -trimpath"), buildCheck},
	{"cgo not set", replaceFirst("ENV CGO_ENABLED=1 \\\n    GOTOOLCHAIN", "ENV GOTOOLCHAIN"), buildCheck},
	{"no OpenSSL headers", replaceFirst(" libssl-dev", ""), buildCheck},
	{"OpenSSL not proven", replaceFirst(" \\\n && /out/ocisigner version | grep -q \"RSA: openssl 3\\.\"", ""), buildCheck},
	{"another binary proven", replaceFirst("&& /out/ocisigner version", "&& /usr/bin/true version"), buildCheck},
	{"no trimpath", replaceFirst(" -trimpath", ""), buildCheck},
	{"version not stamped", replaceFirst("-X main.version=${VERSION}", "-X main.Version=${VERSION}"), buildCheck},
	{"VERSION not declared", replaceFirst("ARG VERSION=dev\n", ""), buildCheck},
	{"wrong package", replaceFirst("./cmd/ocisigner \\\n", "./cmd/other \\\n"), buildCheck},
	{"single stage", replaceFirst(runtimeStage+"\n", ""), "multi-stage build"},
	{"builder unpinned", replaceFirst(buildStage, "FROM golang:latest AS build"), "builder is a pinned Go toolchain"},
	{"builder too old", replaceFirst(buildStage, "FROM golang:1.25.3-bookworm AS build"), "builder is a pinned Go toolchain"},
	{"sources before download", replaceFirst("COPY go.mod go.sum ./\n", "COPY . .\n"), "module download layer cached"},
	{"full base image", replaceFirst(runtimeStage, "FROM debian:bookworm-slim"), runtimeCheck},
	{"distroless latest", replaceFirst(runtimeStage, "FROM gcr.io/distroless/base-debian12:latest"), runtimeCheck},
	{"runtime without libc", replaceFirst(runtimeStage, "FROM gcr.io/distroless/static-debian12:nonroot"), runtimeCheck},
	{"runtime without libssl", replaceFirst(runtimeStage, "FROM gcr.io/distroless/base-nossl-debian12:nonroot"), runtimeCheck},
	{"runtime from scratch", replaceFirst(runtimeStage, "FROM scratch"), runtimeCheck},
	{"runtime of another Debian", replaceFirst(runtimeStage, "FROM gcr.io/distroless/base-debian13:nonroot"), runtimeCheck},
	{"builder of another Debian", replaceFirst(buildStage, "FROM golang:1.26.8-bullseye AS build"), runtimeCheck},
	{"builder of no named Debian", replaceFirst(buildStage, "FROM golang:1.26.8 AS build"), runtimeCheck},
	{"root user", replaceFirst("USER nonroot:nonroot", "USER root"), "final image runs as non-root"},
	{"no user", replaceFirst("USER nonroot:nonroot\n", ""), "final image runs as non-root"},
	{"binary elsewhere", replaceFirst("/out/ocisigner /usr/local/bin/ocisigner", "/out/ocisigner /usr/bin/ocisigner"), "binary and entrypoint"},
	{"entrypoint elsewhere", replaceFirst(`ENTRYPOINT ["/usr/local/bin/ocisigner"]`, `ENTRYPOINT ["/bin/ocisigner"]`), "binary and entrypoint"},
	{"shell entrypoint", replaceFirst(`ENTRYPOINT ["/usr/local/bin/ocisigner"]`, `ENTRYPOINT /usr/local/bin/ocisigner`), "binary and entrypoint"},
	{"default command", replaceFirst(`CMD ["serve"]`, `CMD ["probe"]`), "binary and entrypoint"},
	{"admin port", replaceFirst("EXPOSE 50051 9465", "EXPOSE 50051"), "ports exposed"},
}

var dockerignoreMutations = []mutation{
	{"sources ignored", replaceFirst("**/*_test.go\n", "**/*_test.go\n**/*.go\n"), "build context keeps the sources"},
	{"go.sum ignored", replaceFirst("\n.git\n", "\n.git\ngo.sum\n"), "build context keeps the sources"},
	{"git kept", replaceFirst("\n.git\n", "\n"), "build context leaves out VCS and credentials"},
	{"keys kept", replaceFirst("**/*.pem\n", ""), "build context leaves out VCS and credentials"},
	{"OCI folder re-included", func(s string) (string, error) { return s + "!.oci\n", nil }, "build context leaves out VCS and credentials"},
	{"deployment files kept", replaceFirst("\ndeploy\n", "\n"), "build context leaves out VCS and credentials"},
}

// TestDockerfileChecksCatchRegressions applies each mutation to its file and
// requires the named check (or, for want == "", parsing) to fail.
func TestDockerfileChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	orig, inputs := readRecipeFiles(t), buildInputs(t)
	const dockerfile, dockerignore, gomod = "deploy/Dockerfile", ".dockerignore", "go.mod"
	mutationProof{
		files:     map[string]string{dockerfile: orig.dockerfile, dockerignore: orig.dockerignore, gomod: orig.gomod},
		mutations: slices.Concat(inFile(dockerfile, dockerfileMutations), inFile(dockerignore, dockerignoreMutations)),
		known:     checkNamesUnique(t, recipeChecks),
		load: func(t *testing.T, f map[string]string) (map[string]error, error) {
			r, err := loadRecipe(f[dockerfile], f[dockerignore], f[gomod], inputs)
			if err != nil {
				return nil, err
			}
			return runChecks(t, recipeChecks, r, false), nil
		},
	}.run(t)
}
