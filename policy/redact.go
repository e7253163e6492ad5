package policy

import (
	"github.com/ocisigner/ocisigner/internal/text"
	"regexp"
	"strconv"
	"strings"
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
func echo(s string) string { return strconv.Quote(text.CutCounted(redact(s), maxEcho)) }
