package credentials_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// A session profile's token file that holds something other than a JWT
// (a word, the session key itself, an error answer saved as JSON, a proxy's
// login page, bytes) is refused with the next step: `oci session
// authenticate` for that very profile, which writes a new token file. The
// hint is in what the operator reads (Error) and in what a gateway's client
// reads (Public), and neither quotes the file's content.
func TestNonJWTTokenFileSaysToAuthenticateAgain(t *testing.T) {
	key := signertest.Key(t, 2)
	pemKey := string(signertest.EncodeKey(t, key, signertest.PKCS8, ""))
	const profile = "TEST123"
	const hint = "run `oci session authenticate --profile-name " + profile + "`"
	for _, tc := range []struct {
		name    string
		content string
		// quoted is a piece of the content no message may repeat.
		quoted string
	}{
		{"a word", "not-a-token", "not-a-token"},
		{"the session key instead of the token", pemKey, pemKey[40:80]},
		{"an error answer saved as JSON", `{"code":"NotAuthenticated","message":"session expired"}`, "session expired"},
		{"three parts that are not base64 JSON", "one.two.three", "one.two.three"},
		{"a JWT's header alone", "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9", "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"},
		{"a proxy's login page", "<html><body>Sign in to continue</body></html>", "Sign in to continue"},
		{"bytes", "\x00\x01\x02\xff\xfe binary", "binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := signertest.NewFolder(t)
			f.SessionProfile(profile, key, tc.content)
			_, err := credentialsOf(t, f.ConfigPath(), profile)
			var se *signer.Error
			if !errors.Is(err, signer.ErrTokenMalformed) || !errors.As(err, &se) {
				t.Fatalf("err = %v, want a malformed token", err)
			}
			for where, text := range map[string]string{"error": err.Error(), "client's refusal": se.Public()} {
				if !strings.Contains(text, hint) {
					t.Errorf("the %s gives no next step (%q):\n%s", where, hint, text)
				}
				if strings.Contains(text, tc.quoted) {
					t.Errorf("the %s quotes the token file's content %q:\n%s", where, tc.quoted, text)
				}
				if strings.Contains(text, "oci setup config") {
					t.Errorf("the %s sends a user whose config exists to create one:\n%s", where, text)
				}
			}
		})
	}
}
