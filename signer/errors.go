package signer

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error this package returns for a credential problem
// wraps one of them, so callers decide with errors.Is and never by message.
var (
	// ErrProfileNotFound: the config file has no section of that name.
	ErrProfileNotFound = errors.New("profile not found")
	// ErrConfig: the config or profile is unusable as written (a required key is missing, say).
	ErrConfig = errors.New("invalid configuration")
	// ErrFileMissing: a file the profile names does not exist, even under the mounted folder.
	ErrFileMissing = errors.New("file missing")
	// ErrPermission: a file exists but this process may not read it.
	ErrPermission = errors.New("permission denied")
	// ErrBadKey: the private key file does not hold a usable RSA key.
	ErrBadKey = errors.New("bad private key")
	// ErrPassphraseMissing: the key is encrypted and the profile gives no pass_phrase.
	ErrPassphraseMissing = errors.New("passphrase missing")
	// ErrPassphraseWrong: the key is encrypted and the pass_phrase does not open it.
	ErrPassphraseWrong = errors.New("wrong passphrase")
	// ErrFingerprintMismatch: the key's fingerprint differs from the profile's fingerprint.
	ErrFingerprintMismatch = errors.New("fingerprint mismatch")
	// ErrTokenExpired: the session token's exp has passed.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenMalformed: the session token is not a JWT with the claims OCI issues.
	ErrTokenMalformed = errors.New("token malformed")
	// ErrKeyMismatch: the session token was issued for another key than the profile's key_file.
	ErrKeyMismatch = errors.New("token does not match key")
	// ErrAuthService: a token could not be obtained from an OCI service
	// (auth service, instance metadata, OKE proxymux); the cause says why.
	ErrAuthService = errors.New("auth service request failed")
)

// Error is a credential error with the context an operator needs: which
// profile, which file, what went wrong and what to run to fix it. It never
// carries secret material.
type Error struct {
	Kind    error  // one of the sentinel errors above
	Profile string // profile name, when known
	Path    string // the file involved, when there is one
	Detail  string // what happened, in words
	Hint    string // what to do about it
	Err     error  // underlying cause, if any
	// Token is the token an ErrTokenExpired error is about, so callers can
	// still show when it was issued and when the session ends.
	Token *Token
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Profile != "" {
		b.WriteString("profile ")
		b.WriteString(e.Profile)
		b.WriteString(": ")
	}
	if e.Detail != "" {
		b.WriteString(e.Detail)
	} else {
		b.WriteString(e.Kind.Error())
	}
	if e.Path != "" && !strings.Contains(e.Detail, e.Path) {
		b.WriteString(" (")
		b.WriteString(e.Path)
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Public renders the error for a client of a shared gateway: the profile,
// what is wrong and what to do, without the file paths and causes that
// Error includes (those describe the gateway's layout, for its operator).
func (e *Error) Public() string {
	var b strings.Builder
	if e.Profile != "" {
		b.WriteString("profile ")
		b.WriteString(e.Profile)
		b.WriteString(": ")
	}
	if e.Kind == ErrTokenExpired && e.Detail != "" {
		b.WriteString(e.Detail) // when it expired: no path in it
	} else {
		b.WriteString("credentials not usable (")
		b.WriteString(e.Kind.Error())
		b.WriteString(")")
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	b.WriteString("; the gateway's log has the details")
	return b.String()
}

// Unwrap exposes both the sentinel kind and the cause to errors.Is/As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
