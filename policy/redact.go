package policy

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxEcho bounds a value quoted back in an error, a message or a label.
const maxEcho = 128

// secretLike finds what must never be echoed even when an operator put it
// where a name belongs: a gateway key, and a JWT (three base64url parts,
// the first a JSON object's "{"). Operators paste these by mistake; the
// error that says so must not copy them into a log.
var secretLike = regexp.MustCompile(KeyPrefix + `[A-Za-z0-9_-]*|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?`)

// redact replaces anything that looks like a gateway key or a JWT.
func redact(s string) string {
	return secretLike.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, KeyPrefix) {
			return KeyPrefix + "[redacted]"
		}
		return "[redacted token]"
	})
}

// echo quotes a value from a file, a request or a caller for an error or a
// message: secrets redacted, shortened, control characters escaped.
func echo(s string) string { return strconv.Quote(capLen(redact(s), maxEcho)) }

// capLen shortens s to at most n bytes, on a rune boundary, saying how long
// it was.
func capLen(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[" + strconv.Itoa(len(s)) + " bytes]"
}
