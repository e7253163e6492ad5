package policy

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinels for errors.Is.
var (
	ErrInvalidPolicy = errors.New("invalid policy file")
	ErrInvalidKeys   = errors.New("invalid keys file")
)

// ParseError is a policy or keys file an operator must fix: where, and
// what. The gateway exits 2 with it at start, and keeps the last good file
// with it on a reload.
type ParseError struct {
	File   string
	Line   int // 1-based; 0 when the error is about the whole file
	Column int // 1-based; 0 when the parser did not say
	// Rule is the 1-based index of the policy rule the error is in, and
	// RuleName its name when that was read; 0 and "" outside any rule.
	Rule     int
	RuleName string
	Msg      string
	kind     error // ErrInvalidPolicy or ErrInvalidKeys
}

func (e *ParseError) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
		if e.Column > 0 {
			s += ":" + strconv.Itoa(e.Column)
		}
	}
	s += ": "
	if e.Rule > 0 {
		s += "rule " + strconv.Itoa(e.Rule)
		if e.RuleName != "" {
			s += fmt.Sprintf(" (%s)", e.RuleName)
		}
		s += ": "
	}
	return s + e.Msg
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) (or ErrInvalidKeys) true.
func (e *ParseError) Unwrap() error { return e.kind }
