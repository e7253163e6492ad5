package credentials_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The seed setup of a new user: [DEFAULT] holds an API key with a user, and
// `oci session authenticate` appends [TEST123] with its own
// security_token_file. TEST123 is a session profile whatever it inherits:
// signed as DEFAULT's user with the session key it would earn a 401.
func TestSessionProfileBelowAnAPIKeyDefault(t *testing.T) {
	f := signertest.NewFolder(t)
	apiKey, sessKey := signertest.Key(t, 1), signertest.Key(t, 2)
	f.Write("oci_api_key.pem", signertest.EncodeKey(t, apiKey, signertest.PKCS8, ""))
	f.AppendConfig("DEFAULT", "user", "ocid1.user.oc1..default", "fingerprint", signer.Fingerprint(&apiKey.PublicKey),
		"key_file", f.WrittenPath("oci_api_key.pem"), "tenancy", "ocid1.tenancy.oc1..test", "region", "us-ashburn-1")
	tok := signertest.NewIssuer(t).Mint(t, &sessKey.PublicKey, signertest.TokenOptions{})
	f.Write("sessions/TEST123/oci_api_key.pem", signertest.EncodeKey(t, sessKey, signertest.PKCS1, ""))
	f.Write("sessions/TEST123/token", []byte(tok+"\n"))
	f.AppendConfig("TEST123", "fingerprint", signer.Fingerprint(&sessKey.PublicKey), "key_file", f.WrittenPath("sessions/TEST123/oci_api_key.pem"),
		"tenancy", "ocid1.tenancy.oc1..test", "region", "us-phoenix-1", "security_token_file", f.WrittenPath("sessions/TEST123/token"))
	// authentication_type decides when present, whatever the keys say.
	f.AppendConfig("FORCED", "authentication_type", "api_key", "security_token_file", f.WrittenPath("sessions/TEST123/token"))

	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		profile string
		kind    signer.Kind
		keyID   string
	}{
		{"TEST123", signer.KindSession, "ST$" + tok},
		{"DEFAULT", signer.KindAPIKey, "ocid1.tenancy.oc1..test/ocid1.user.oc1..default/" + signer.Fingerprint(&apiKey.PublicKey)},
		{"FORCED", signer.KindAPIKey, "ocid1.tenancy.oc1..test/ocid1.user.oc1..default/" + signer.Fingerprint(&apiKey.PublicKey)},
	} {
		p, _ := cfg.Profile(tc.profile)
		c, err := cfg.Source(tc.profile).Credentials(context.Background())
		if err != nil || p.Kind() != tc.kind || c.Kind != tc.kind || c.KeyID != tc.keyID {
			t.Errorf("%s: kind %s, credentials %v %v; want %s with keyId %.40s…", tc.profile, p.Kind(), c, err, tc.kind, tc.keyID)
		}
	}
}

// A session token may be given as a file holding the JWT or its JSON form,
// or as a value in the environment; a key passphrase as a file or a value;
// a delegation token as a file, signed as opc-obo-token.
func TestTokenAndSecretForms(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	tok := is.Mint(t, &key.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..forms"})
	newFolder := func(t *testing.T, kv ...string) *signertest.Folder {
		f := signertest.NewFolder(t)
		f.Write("key.pem", signertest.EncodeKey(t, key, signertest.EncryptedPKCS8, "s3cret=#;"))
		f.AppendConfig("S", append([]string{"key_file", f.WrittenPath("key.pem"), "region", "us-ashburn-1", "tenancy", "ocid1.tenancy.oc1..test"}, kv...)...)
		return f
	}
	for _, tc := range []struct {
		name    string
		folder  func(t *testing.T) *signertest.Folder
		opts    []credentials.Option
		obo     string
		wantErr error
	}{
		{name: "token file with the JWT, pass_phrase_file", folder: func(t *testing.T) *signertest.Folder {
			f := newFolder(t, "security_token_file", "token", "pass_phrase_file", "pass")
			f.Write("token", []byte(tok+"\n"))
			f.Write("pass", []byte("s3cret=#;\n"))
			return f
		}},
		{name: "token file with the JSON form", folder: func(t *testing.T) *signertest.Folder {
			f := newFolder(t, "security_token_file", "token", "pass_phrase", "s3cret=#;")
			f.Write("token", []byte(`{"token": "`+tok+`"}`))
			return f
		}},
		{name: "token and passphrase as values", folder: func(t *testing.T) *signertest.Folder { return newFolder(t) },
			opts: []credentials.Option{credentials.WithProfileSecrets("S", tok, "s3cret=#;")}},
		{name: "token as a JSON value", folder: func(t *testing.T) *signertest.Folder { return newFolder(t, "pass_phrase", "s3cret=#;") },
			opts: []credentials.Option{credentials.WithProfileSecrets("S", `{"token":"ST$`+tok+`"}`, "")}},
		{name: "values for another profile do not apply", folder: func(t *testing.T) *signertest.Folder { return newFolder(t) },
			opts: []credentials.Option{credentials.WithProfileSecrets("OTHER", tok, "s3cret=#;")}, wantErr: signer.ErrConfig},
		{name: "a delegation token", folder: func(t *testing.T) *signertest.Folder {
			f := newFolder(t, "security_token_file", "token", "pass_phrase", "s3cret=#;", "delegation_token_file", "obo")
			f.Write("token", []byte(tok))
			f.Write("obo", []byte("obo-token-value\n"))
			return f
		}, obo: "obo-token-value"},
		{name: "a wrong passphrase file", folder: func(t *testing.T) *signertest.Folder {
			f := newFolder(t, "security_token_file", "token", "pass_phrase_file", "pass")
			f.Write("token", []byte(tok))
			f.Write("pass", []byte("wrong"))
			return f
		}, wantErr: signer.ErrPassphraseWrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.folder(t)
			cfg, err := openTest(t, f.ConfigPath(), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := cfg.Source("S").Credentials(context.Background())
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != signer.KindSession || c.KeyID != "ST$"+tok || c.Token.Subject != "ocid1.user.oc1..forms" || c.OBOToken != tc.obo {
				t.Fatalf("%+v", c)
			}
		})
	}
	// The delegation token is read again when its file changes.
	f := newFolder(t, "security_token_file", "token", "pass_phrase", "s3cret=#;", "delegation_token_file", "obo")
	f.Write("token", []byte(tok))
	f.Write("obo", []byte("first"))
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := cfg.Source("S").Credentials(context.Background()); c == nil || c.OBOToken != "first" {
		t.Fatalf("%+v", c)
	}
	f.Replace("obo", []byte("second"))
	if c, _ := cfg.Source("S").Credentials(context.Background()); c == nil || c.OBOToken != "second" {
		t.Fatalf("rotated delegation token not used: %+v", c)
	}
}
