package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// The workflow that runs extproc's end-to-end table against real Envoy
// binaries (.github/workflows/envoy-e2e.yml): decoded strictly into the
// subset of GitHub's workflow syntax it uses, as the GitHub Actions
// example is (github_actions_test.go), and checked end to end: the images
// are the floor envoy.yaml states and the one the repository ships, the
// binary taken out of the image is the one OCISIGNER_ENVOY names, and the
// go test command runs the table, and only the table, uncached. The
// extproc test files are part of what is checked: the table's name and
// the variable its runner reads come from them.
const (
	e2eWorkflowFile = ".github/workflows/envoy-e2e.yml"
	e2eDocsFile     = "docs/testing.md"
	e2eTableTest    = "TestEnvoyEndToEnd"
	e2eEnvoyConst   = "envoyBinaryEnv" // extproc's name for the variable
	e2eEnvoyInImage = "/usr/local/bin/envoy"
	ghMatrixEnvoy   = "${{ matrix.envoy }}"
	ghRunnerTemp    = "${{ runner.temp }}/"
)

type e2eWorkflow struct {
	Name        string             `json:"name"`
	On          map[string]any     `json:"on"`
	Permissions map[string]string  `json:"permissions"`
	Jobs        map[string]*e2eJob `json:"jobs"`
}

type e2eJob struct {
	Name           string      `json:"name"`
	RunsOn         string      `json:"runs-on"`
	TimeoutMinutes int         `json:"timeout-minutes"`
	Strategy       e2eStrategy `json:"strategy"`
	Steps          []ghStep    `json:"steps"`
}

type e2eStrategy struct {
	FailFast *bool `json:"fail-fast"`
	Matrix   struct {
		Envoy []string `json:"envoy"`
	} `json:"matrix"`
}

// e2eLoaded is the workflow, its one job, and what it must agree with.
type e2eLoaded struct {
	wf           *e2eWorkflow
	job          *e2eJob
	composeImage string   // docker-compose.yml's Envoy image
	tests        []string // extproc's top-level Test functions
	envoyVar     string   // the variable extproc's table reads
	docs         string   // docs/testing.md
}

func loadE2EWorkflow(files map[string]string, composeImage string) (*e2eLoaded, error) {
	js, err := yaml.YAMLToJSONStrict([]byte(files[e2eWorkflowFile]))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var wf e2eWorkflow
	if err := dec.Decode(&wf); err != nil {
		return nil, err
	}
	if len(wf.Jobs) != 1 {
		return nil, fmt.Errorf("%d jobs, want one", len(wf.Jobs))
	}
	l := &e2eLoaded{wf: &wf, composeImage: composeImage, docs: files[e2eDocsFile]}
	for _, j := range wf.Jobs {
		l.job = j
	}
	for name, src := range files {
		if strings.HasPrefix(name, "extproc/") {
			if err := l.readGoTests(name, src); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// goTestFile is what readGoTests takes from a Go file.
type goTestFile struct {
	tests    []string
	envoyVar string
}

// goTestFiles caches goTestFile by file name and content: the mutation
// proof loads the same twenty files for every mutation, under -race.
var goTestFiles sync.Map

// readGoTests notes the file's Test functions and the table's variable.
func (l *e2eLoaded) readGoTests(name, src string) error {
	key := name + "\x00" + src
	r, ok := goTestFiles.Load(key)
	if !ok {
		g, err := parseGoTests(name, src)
		if err != nil {
			return err
		}
		r, _ = goTestFiles.LoadOrStore(key, g)
	}
	g := r.(goTestFile)
	l.tests = append(l.tests, g.tests...)
	if g.envoyVar != "" {
		l.envoyVar = g.envoyVar
	}
	return nil
}

func parseGoTests(name, src string) (goTestFile, error) {
	var l goTestFile
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
	if err != nil {
		return l, err
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && strings.HasPrefix(d.Name.Name, "Test") {
				l.tests = append(l.tests, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				vs, ok := s.(*ast.ValueSpec)
				if !ok || d.Tok != token.CONST || len(vs.Names) != 1 || vs.Names[0].Name != e2eEnvoyConst || len(vs.Values) != 1 {
					continue
				}
				if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
					l.envoyVar, _ = strconv.Unquote(lit.Value)
				}
			}
		}
	}
	return l, nil
}

// stepRunning returns the index and the step whose run holds s, or -1.
func (l *e2eLoaded) stepRunning(s string) (int, *ghStep) {
	i := slices.IndexFunc(l.job.Steps, func(st ghStep) bool { return strings.Contains(st.Run, s) })
	if i < 0 {
		return -1, nil
	}
	return i, &l.job.Steps[i]
}

func (l *e2eLoaded) stepUsing(action string) (int, *ghStep) {
	i := slices.IndexFunc(l.job.Steps, func(st ghStep) bool { return strings.HasPrefix(st.Uses, action+"@") })
	if i < 0 {
		return -1, nil
	}
	return i, &l.job.Steps[i]
}

// goTestArgs splits the table step's command: go test and its arguments,
// single quotes removed as the shell removes them.
func goTestArgs(run string) ([]string, bool) {
	f := strings.Fields(strings.TrimSpace(run))
	if len(f) < 2 || f[0] != "go" || f[1] != "test" || strings.ContainsAny(run, "\n;&|") {
		return nil, false
	}
	for i := range f {
		f[i] = strings.Trim(f[i], "'")
	}
	return f[2:], true
}

func argAfter(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

var e2eChecks = []namedCheck[*e2eLoaded]{
	{"job: on pushes and pull requests, on Linux, bounded in time", func(l *e2eLoaded) error {
		var p problems
		for _, ev := range []string{"push", "pull_request"} {
			if _, ok := l.wf.On[ev]; !ok {
				p.addf(`no "on: %s": a change to envoy.yaml or the signer would not run the table on real Envoy`, ev)
			}
		}
		if !strings.HasPrefix(l.job.RunsOn, "ubuntu-") {
			p.addf("runs-on %q: the binary taken out of the image is a Linux one, and Docker is needed", l.job.RunsOn)
		}
		if l.job.TimeoutMinutes <= 0 || l.job.TimeoutMinutes > 60 {
			p.addf("timeout-minutes %d: want a bound of at most an hour", l.job.TimeoutMinutes)
		}
		return p.err()
	}},
	{"permissions: read the code, nothing else", func(l *e2eLoaded) error {
		if len(l.wf.Permissions) != 1 || l.wf.Permissions["contents"] != "read" {
			return fmt.Errorf("permissions %v, want only contents: read", l.wf.Permissions)
		}
		return nil
	}},
	{"matrix: the floor and the shipped Envoy, each run to the end", func(l *e2eLoaded) error {
		var p problems
		images := l.job.Strategy.Matrix.Envoy
		floor := fmt.Sprintf("envoyproxy/envoy:v1.%d.0", minEnvoyMinor)
		for _, want := range []string{floor, l.composeImage} {
			if !slices.Contains(images, want) {
				p.addf("matrix.envoy %q lacks %s (%s)", images, want, map[bool]string{true: "the oldest release envoy.yaml supports", false: "docker-compose.yml's image"}[want == floor])
			}
		}
		for _, img := range images {
			if !envoyImage.MatchString(img) {
				p.addf("image %q is not an exact envoyproxy/envoy:vX.Y.Z tag", img)
			}
		}
		if len(slices.Compact(slices.Sorted(slices.Values(images)))) != len(images) {
			p.addf("matrix.envoy %q repeats an image", images)
		}
		if ff := l.job.Strategy.FailFast; ff == nil || *ff {
			p.addf("fail-fast must be false: one Envoy's failure would cancel the other's run")
		}
		return p.err()
	}},
	{"envoy taken out of the image", func(l *e2eLoaded) error {
		var p problems
		_, st := l.stepRunning("docker cp")
		if st == nil {
			return errors.New("no step copies envoy out of the image (docker cp)")
		}
		if st.Env["IMAGE"] != ghMatrixEnvoy {
			p.addf("IMAGE = %q, want %s", st.Env["IMAGE"], ghMatrixEnvoy)
		}
		if !strings.HasPrefix(st.Env["ENVOY"], ghRunnerTemp) {
			p.addf("ENVOY = %q, want a file in %s", st.Env["ENVOY"], ghRunnerTemp)
		}
		for _, want := range []string{`id=$(docker create "$IMAGE")`, fmt.Sprintf(`docker cp -L "$id:%s" "$ENVOY"`, e2eEnvoyInImage), `"$ENVOY" --version`} {
			if !strings.Contains(st.Run, want) {
				p.addf("the step does not run %s", want)
			}
		}
		return p.err()
	}},
	{"the table runs against it", func(l *e2eLoaded) error {
		var p problems
		_, get := l.stepRunning("docker cp")
		_, st := l.stepRunning("go test")
		if st == nil {
			return errors.New("no step runs go test")
		}
		if l.envoyVar == "" || !slices.Contains(l.tests, e2eTableTest) {
			p.addf("extproc has no %s reading the variable %s names: the workflow would test nothing", e2eTableTest, e2eEnvoyConst)
		}
		if v := st.Env[l.envoyVar]; l.envoyVar != "" && (get == nil || v == "" || v != get.Env["ENVOY"]) {
			p.addf("%s = %q in the go test step, want the binary the copy step writes: without it the table runs on the stand-in", l.envoyVar, v)
		}
		args, ok := goTestArgs(st.Run)
		if !ok {
			return errors.Join(p.err(), fmt.Errorf("run %q: want one go test command", st.Run))
		}
		if !slices.Contains(args, "-count=1") {
			p.addf("go test without -count=1: a cached pass would not have run Envoy")
		}
		if !slices.Contains(args, "./extproc") {
			p.addf("go test %q: want the package ./extproc", args)
		}
		expr, _ := argAfter(args, "-run")
		re, err := regexp.Compile(expr)
		if err != nil || expr == "" {
			p.addf("-run %q: %v", expr, err)
		} else if matched := slices.DeleteFunc(slices.Clone(l.tests), func(n string) bool { return !re.MatchString(n) }); !slices.Equal(matched, []string{e2eTableTest}) {
			p.addf("-run %q selects %q, want %s alone", expr, matched, e2eTableTest)
		}
		return p.err()
	}},
	{"docs/testing.md runs the table as the workflow does", func(l *e2eLoaded) error {
		_, st := l.stepRunning("go test")
		if st == nil {
			return errors.New("no step runs go test")
		}
		for _, line := range strings.Split(l.docs, "\n") {
			if v, ok := strings.CutPrefix(line, l.envoyVar+"="); ok && l.envoyVar != "" && strings.HasSuffix(v, " "+strings.TrimSpace(st.Run)) {
				return nil
			}
		}
		return fmt.Errorf("%s has no command %s=... %s", e2eDocsFile, l.envoyVar, strings.TrimSpace(st.Run))
	}},
	{"steps in order", func(l *e2eLoaded) error {
		var p problems
		checkout, co := l.stepUsing("actions/checkout")
		setup, sg := l.stepUsing("actions/setup-go")
		get, _ := l.stepRunning("docker cp")
		table, _ := l.stepRunning("go test")
		if checkout < 0 || setup < 0 || get < 0 || table < 0 {
			return fmt.Errorf("steps: checkout %d, setup-go %d, copy envoy %d, go test %d: one is missing", checkout, setup, get, table)
		}
		if !(checkout < setup && setup < table && get < table) {
			p.addf("steps in the wrong order: check out, set up Go and copy envoy before go test")
		}
		if co.With["persist-credentials"] != false {
			p.addf("checkout must set persist-credentials: false: nothing here pushes")
		}
		if sg.With["go-version-file"] != "go.mod" {
			p.addf("setup-go with %v: want go-version-file: go.mod, the module's own Go", sg.With)
		}
		return p.err()
	}},
}

func readE2EWorkflowFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{e2eWorkflowFile: readRepoFile(t, e2eWorkflowFile), e2eDocsFile: readRepoFile(t, e2eDocsFile)}
	names, err := filepath.Glob(filepath.Join(repoRoot, "extproc", "*_test.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("extproc's tests: %v", err)
	}
	for _, n := range names {
		rel := "extproc/" + filepath.Base(n)
		files[rel] = readRepoFile(t, rel)
	}
	return files
}

func TestEnvoyE2EWorkflow(t *testing.T) {
	t.Parallel()
	l, err := loadE2EWorkflow(readE2EWorkflowFiles(t), loadKubeRefs(t).composeImage)
	if err != nil {
		t.Fatal(err)
	}
	runChecks(t, e2eChecks, l, true)
}

var e2eMutations = []fileMutation{
	// Must not load.
	{e2eWorkflowFile, mutation{"bare on", replaceFirst(`"on":`, "on:"), ""}},
	{e2eWorkflowFile, mutation{"misspelt key", replaceFirst("    strategy:\n", "    stratgy:\n"), ""}},
	{e2eWorkflowFile, mutation{"duplicate key", replaceFirst("      fail-fast: false\n", "      fail-fast: false\n      fail-fast: true\n"), ""}},
	{e2eWorkflowFile, mutation{"job permissions", replaceFirst("    runs-on: ubuntu-24.04\n", "    runs-on: ubuntu-24.04\n    permissions:\n      contents: write\n"), ""}},

	{e2eWorkflowFile, mutation{"manual only", replaceFirst("  push:\n    branches: [main]\n  pull_request:\n", ""), "job: on pushes and pull requests, on Linux, bounded in time"}},
	{e2eWorkflowFile, mutation{"on macOS", replaceFirst("runs-on: ubuntu-24.04", "runs-on: macos-14"), "job: on pushes and pull requests, on Linux, bounded in time"}},
	{e2eWorkflowFile, mutation{"unbounded", replaceFirst("    timeout-minutes: 20\n", ""), "job: on pushes and pull requests, on Linux, bounded in time"}},

	{e2eWorkflowFile, mutation{"contents written", replaceFirst("  contents: read\n", "  contents: write\n"), "permissions: read the code, nothing else"}},
	{e2eWorkflowFile, mutation{"a token asked for", replaceFirst("  contents: read\n", "  contents: read\n  id-token: write\n"), "permissions: read the code, nothing else"}},

	{e2eWorkflowFile, mutation{"floor moved", replaceFirst("          - envoyproxy/envoy:v1.37.0\n", "          - envoyproxy/envoy:v1.38.0\n"), "matrix: the floor and the shipped Envoy, each run to the end"}},
	{e2eWorkflowFile, mutation{"floor patched", replaceFirst("          - envoyproxy/envoy:v1.37.0\n", "          - envoyproxy/envoy:v1.37.10\n"), "matrix: the floor and the shipped Envoy, each run to the end"}},
	{e2eWorkflowFile, mutation{"drifts from compose", replaceFirst("          - envoyproxy/envoy:v1.40.0\n", "          - envoyproxy/envoy:v1.39.1\n"), "matrix: the floor and the shipped Envoy, each run to the end"}},
	{e2eWorkflowFile, mutation{"a floating tag", replaceFirst("          - envoyproxy/envoy:v1.40.0\n", "          - envoyproxy/envoy:v1.40.0\n          - envoyproxy/envoy:latest\n"), "matrix: the floor and the shipped Envoy, each run to the end"}},
	{e2eWorkflowFile, mutation{"fail fast", replaceFirst("      fail-fast: false\n", ""), "matrix: the floor and the shipped Envoy, each run to the end"}},

	{e2eWorkflowFile, mutation{"image hard-coded", replaceFirst("IMAGE: ${{ matrix.envoy }}", "IMAGE: envoyproxy/envoy:v1.40.0"), "envoy taken out of the image"}},
	{e2eWorkflowFile, mutation{"another file copied", replaceFirst(`"$id:/usr/local/bin/envoy"`, `"$id:/usr/bin/envoy"`), "envoy taken out of the image"}},
	{e2eWorkflowFile, mutation{"version unchecked", replaceFirst("          \"$ENVOY\" --version\n", ""), "envoy taken out of the image"}},
	{e2eWorkflowFile, mutation{"binary outside the runner's temp", replaceFirst("          ENVOY: ${{ runner.temp }}/envoy\n", "          ENVOY: envoy\n"), "envoy taken out of the image"}},

	{e2eWorkflowFile, mutation{"OCISIGNER_ENVOY unset", replaceFirst("          OCISIGNER_ENVOY: ${{ runner.temp }}/envoy\n", ""), "the table runs against it"}},
	{e2eWorkflowFile, mutation{"OCISIGNER_ENVOY elsewhere", replaceFirst("OCISIGNER_ENVOY: ${{ runner.temp }}/envoy", "OCISIGNER_ENVOY: /usr/local/bin/envoy"), "the table runs against it"}},
	{e2eWorkflowFile, mutation{"cached", replaceFirst("go test -count=1 -v", "go test -v"), "the table runs against it"}},
	{e2eWorkflowFile, mutation{"every test", replaceFirst(`-run '^TestEnvoyEndToEnd$'`, `-run '^Test'`), "the table runs against it"}},
	{e2eWorkflowFile, mutation{"no test", replaceFirst(`-run '^TestEnvoyEndToEnd$'`, `-run '^TestEnvoyEnd$'`), "the table runs against it"}},
	{e2eWorkflowFile, mutation{"another package", replaceFirst(" ./extproc\n", " ./deploy\n"), "the table runs against it"}},
	{"extproc/e2e_table_test.go", mutation{"the table renamed", replaceFirst("func TestEnvoyEndToEnd(", "func TestEndToEndTable("), "the table runs against it"}},
	{"extproc/envoy_process_test.go", mutation{"the variable renamed", replaceFirst(`envoyBinaryEnv = "OCISIGNER_ENVOY"`, `envoyBinaryEnv = "OCISIGNER_ENVOY_BINARY"`), "the table runs against it"}},

	{e2eDocsFile, mutation{"the docs' command cached", replaceEvery("envoy go test -count=1 -v", "envoy go test -v"), "docs/testing.md runs the table as the workflow does"}},
	{e2eWorkflowFile, mutation{"the docs left behind", replaceFirst(`go test -count=1 -v -run '^TestEnvoyEndToEnd$' ./extproc`, `go test -count=1 -v -run '^TestEnvoyEndToEnd$' -timeout 10m ./extproc`), "docs/testing.md runs the table as the workflow does"}},

	{e2eWorkflowFile, mutation{"table before the copy", moveStep("Run the end-to-end table against it", 2), "steps in order"}},
	{e2eWorkflowFile, mutation{"checkout keeps the token", replaceFirst("persist-credentials: false", "persist-credentials: true"), "steps in order"}},
	{e2eWorkflowFile, mutation{"another Go", replaceFirst("go-version-file: go.mod", "go-version: stable"), "steps in order"}},
}

// replaceEvery replaces every occurrence of old, and fails when there is none.
func replaceEvery(old, repl string) func(string) (string, error) {
	return func(s string) (string, error) {
		if !strings.Contains(s, old) {
			return "", fmt.Errorf("%q not found", old)
		}
		return strings.ReplaceAll(s, old, repl), nil
	}
}

func TestEnvoyE2EWorkflowChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	compose := loadKubeRefs(t).composeImage
	mutationProof{
		files:     readE2EWorkflowFiles(t),
		mutations: e2eMutations,
		known:     checkNamesUnique(t, e2eChecks),
		load: func(t *testing.T, f map[string]string) (map[string]error, error) {
			l, err := loadE2EWorkflow(f, compose)
			if err != nil {
				return nil, err
			}
			return runChecks(t, e2eChecks, l, false), nil
		},
	}.run(t)
}
