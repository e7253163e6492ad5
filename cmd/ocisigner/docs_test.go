package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer"
)

// The documentation that can drift is generated from the code, and these
// tests fail when it differs; OCISIGNER_UPDATE_DOCS=1 rewrites it:
//
//	OCISIGNER_UPDATE_DOCS=1 go test ./cmd/ocisigner -run TestDocs
//
// Every code block of README.md and docs/*.md says what it is on its fence:
// "generated" (below), "tested" (every line of it is in a test or in
// .ci/run, which runs it) or "illustration".

const repoRoot = "../.."

var update = os.Getenv("OCISIGNER_UPDATE_DOCS") == "1"

// generated replaces (or checks) what lies between <!-- generated: NAME -->
// and <!-- end: NAME --> in a doc.
func generated(t *testing.T, doc, name, want string) {
	t.Helper()
	path := filepath.Join(repoRoot, doc)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- generated: "+name+" -->\n", "<!-- end: "+name+" -->"
	i, j := bytes.Index(data, []byte(begin)), bytes.Index(data, []byte(end))
	if i < 0 && update { // a new command: its section goes at the end
		data = fmt.Appendf(bytes.TrimRight(data, "\n"), "\n\n## %s\n\n%s%s\n", strings.TrimSuffix(name, " -h"), begin, end)
		i, j = bytes.Index(data, []byte(begin)), bytes.Index(data, []byte(end))
	}
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section; run OCISIGNER_UPDATE_DOCS=1 go test ./cmd/ocisigner -run TestDocs", doc, begin, end)
	}
	got := string(data[i+len(begin) : j])
	if got == want {
		return
	}
	if !update {
		t.Fatalf("%s: the %s section differs from the code; run OCISIGNER_UPDATE_DOCS=1 go test ./cmd/ocisigner -run TestDocs\ngot:\n%s\nwant:\n%s", doc, name, got, want)
	}
	out := append(append(append([]byte{}, data[:i+len(begin)]...), want...), data[j:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The flag reference is each command's own -h, which its flag set writes.
func TestDocsCommandReference(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := runCmd(t, nil, c.name, "-h")
		if code != exitOK || errOut != "" {
			t.Fatalf("%s -h: exit %d %s", c.name, code, errOut)
		}
		generated(t, "docs/commands.md", "ocisigner "+c.name+" -h", "```text generated\n"+out+"```\n")
	}
}

// The exit-code table of docs/commands.md has a row for every exit code,
// and none for a code that does not exist.
func TestDocsExitCodes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(string(data), -1)
	seen := map[int]bool{}
	for _, r := range rows {
		code, _ := strconv.Atoi(r[1])
		if _, ok := exitMeaning[code]; !ok {
			t.Errorf("docs/commands.md explains exit code %d, which no command uses", code)
		}
		seen[code] = true
	}
	for code, meaning := range exitMeaning {
		if !seen[code] {
			t.Errorf("docs/commands.md has no row for exit code %d (%s)", code, meaning)
		}
	}
}

// The alias table is the alias list.
func TestDocsAliasTable(t *testing.T) {
	var b strings.Builder
	b.WriteString("| alias | host | path prefix | service |\n|---|---|---|---|\n")
	for _, a := range signer.Aliases() {
		prefix := ""
		if a.Prefix != "" {
			prefix = "`" + a.Prefix + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", a.Name, a.Template, prefix, a.Service)
	}
	generated(t, "docs/aliases.md", "aliases", b.String())
}

var fence = regexp.MustCompile("(?m)^```(.*)$")

// Every code block says whether it is generated, tested or an
// illustration. A tested one is, line by line, in a test or in .ci/run, or
// a test reads it from the doc: that test names the doc's file and the
// heading of the block's section.
func TestDocsCodeBlocks(t *testing.T) {
	corpus := testCorpus(t)
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	docs = append(docs, filepath.Join(repoRoot, "README.md"))
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		marks := fence.FindAllStringSubmatchIndex(text, -1)
		if len(marks)%2 != 0 {
			t.Fatalf("%s: an unclosed code block", doc)
		}
		for k := 0; k < len(marks); k += 2 {
			info := strings.Fields(text[marks[k][2]:marks[k][3]])
			body := text[marks[k][1]+1 : marks[k+1][0]]
			line := strings.Count(text[:marks[k][0]], "\n") + 1
			kind := ""
			if len(info) == 2 {
				kind = info[1]
			}
			switch kind {
			case "illustration":
			case "generated":
				if !strings.Contains(text[:marks[k][0]], "<!-- generated: ") {
					t.Errorf("%s:%d: a generated block outside a generated section", doc, line)
				}
			case "tested":
				if readByATest(corpus, filepath.Base(doc), text[:marks[k][0]]) {
					continue
				}
				for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.Contains(corpus, l) {
						t.Errorf("%s:%d: a tested block's line is in no test: %q", doc, line, l)
					}
				}
			default:
				t.Errorf("%s:%d: the code block's fence must say `LANG illustration`, `LANG tested` or `LANG generated`, not %q", doc, line, strings.Join(info, " "))
			}
		}
	}
}

// readByATest: some test names the doc and, quoted, the heading of the
// section before (the last "## " line of) the text ahead of the block.
func readByATest(corpus, docName, before string) bool {
	i := strings.LastIndex(before, "\n## ")
	if i < 0 || !strings.Contains(corpus, `"`+docName+`"`) {
		return false
	}
	heading, _, _ := strings.Cut(before[i+1:], "\n")
	return strings.Contains(corpus, `"`+heading+`"`)
}

// testCorpus is every test file and .ci/run.
func testCorpus(t *testing.T) string {
	var b strings.Builder
	err := filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, filepath.Join(".ci", "run")) {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Every refusal code a gateway can answer with, the signer's and the
// policy's, has its row in docs/troubleshooting.md.
func TestDocsTroubleshootingHasEveryRefusal(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range append(append([]string{}, extproc.Codes...), policy.Codes...) {
		if !strings.Contains(string(data), "`"+code+"`") {
			t.Errorf("docs/troubleshooting.md does not explain refusal %s", code)
		}
	}
}

// README.md fits a screen and opens with what a first run needs: the two
// commands, the uid and the profile, within its first 40 lines, and at
// most 150 lines in all (the rest lives in docs/). .ci/run runs the test
// command the README gives, as it is written there.
func TestDocsReadmeFitsAScreen(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 150 {
		t.Errorf("README.md has %d lines; at most 150 (move the detail to docs/)", len(lines))
	}
	const (
		run   = "docker compose up gateway"
		tests = "go test -race -count=1 ./..."
	)
	top := strings.Join(lines[:min(40, len(lines))], "\n")
	for _, want := range []string{"```sh illustration\n" + run + "\n```", "```sh tested\n" + tests + "\n```",
		"OCISIGNER_UID", "OCISIGNER_GID", "OCI_CLI_PROFILE", "OCI_CONFIG_DIR"} {
		if !strings.Contains(top, want) {
			t.Errorf("README.md's first 40 lines lack %q", want)
		}
	}
	ci, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ci), "\n"), tests) {
		t.Errorf(".ci/run does not run the README's test command %q as it is written", tests)
	}
}
