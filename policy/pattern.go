package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MaxPatternLen bounds a pattern in a policy file, so that a hostile or
// mistaken file cannot make matching expensive.
const MaxPatternLen = 256

// A pattern matches a whole value. In a pattern, "*" stands for one or more
// characters none of which is a separator of the field, "**" for one or more
// characters of any kind, and every other character for itself. A run of
// three or more "*" is an error. Separators per field:
//
//	spiffe   /        spiffe://example.org/ns/*/sa/builder
//	dns      .        *.build.example.com         (and case-insensitive)
//	subject  / and :  system:serviceaccount:team-a:*
//	claim    / and :  repo:octo-org/*:ref:refs/heads/main
//	key      none     team-a-*                    (names hold neither)
//	host     .        objectstorage.*.oraclecloud.com (and case-insensitive)
//
// Matching compiles to a regular expression (RE2), so its time is linear
// in the value whatever the pattern: no pattern can make a request slow.
type pattern struct {
	text string
	re   *regexp.Regexp
}

// Separator sets, one per kind of field.
const (
	sepPath  = "/"
	sepDNS   = "."
	sepClaim = "/:"
	sepNone  = ""
)

var errEmptyPattern = errors.New("is empty")

func compilePattern(text, seps string, fold bool) (pattern, error) {
	if text == "" {
		return pattern{}, errEmptyPattern
	}
	if len(text) > MaxPatternLen {
		return pattern{}, fmt.Errorf("is %d bytes long; the limit is %d", len(text), MaxPatternLen)
	}
	if i := strings.IndexFunc(text, isControl); i >= 0 {
		return pattern{}, fmt.Errorf("holds a control character at byte %d", i)
	}
	if strings.Contains(text, "***") {
		return pattern{}, errors.New(`holds "***": write "*" for one segment or "**" for any number of them`)
	}
	if fold {
		text = strings.ToLower(text)
	}
	var b strings.Builder
	b.WriteString(`^(?s:`)
	one := `.+`
	if seps != "" {
		one = `[^` + regexp.QuoteMeta(seps) + `]+`
	}
	for rest := text; rest != ""; {
		i := strings.IndexByte(rest, '*')
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		if strings.HasPrefix(rest[i:], "**") {
			b.WriteString(`.+`)
			rest = rest[i+2:]
		} else {
			b.WriteString(one)
			rest = rest[i+1:]
		}
	}
	b.WriteString(`)$`)
	re, err := regexp.Compile(b.String())
	if err != nil { // cannot happen: every literal is quoted
		return pattern{}, fmt.Errorf("cannot be compiled: %w", err)
	}
	return pattern{text: text, re: re}, nil
}

func (p pattern) match(v string) bool { return p.re != nil && p.re.MatchString(v) }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
