package credentials_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

func TestSessionProfileSignsWithTokenKeyID(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	f := signertest.NewFolder(t)
	tok := is.Mint(t, &key.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..me", Tenant: "ocid1.tenancy.oc1..ten"})
	f.SessionProfile("TEST123", key, "  "+tok+"\n\n") // whitespace around the token must go
	c, err := credentialsOf(t, f.ConfigPath(), "TEST123")
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyID != "ST$"+tok {
		t.Fatalf("keyId not ST$<trimmed token>: %q", signer.MaskKeyID(c.KeyID))
	}
	if c.Kind != signer.KindSession || c.Token.Subject != "ocid1.user.oc1..me" || c.Token.Tenant != "ocid1.tenancy.oc1..ten" || c.Region != "us-phoenix-1" {
		t.Fatalf("unexpected credentials %+v / %+v", c, c.Token)
	}
	if c.Token.SessionEnd.IsZero() || c.Token.IssuedAt.IsZero() || c.Expiry().Sub(c.Token.IssuedAt) != time.Hour {
		t.Fatalf("claims not read: %+v", c.Token)
	}
}

func TestSessionErrors(t *testing.T) {
	key := signertest.Key(t, 2)
	other := signertest.Key(t, 3)
	is := signertest.NewIssuer(t)
	now := time.Now()
	valid := is.Mint(t, &key.PublicKey, signertest.TokenOptions{})
	for _, tc := range []struct {
		name     string
		token    string
		want     error
		contains []string
	}{
		{"expired token", is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: now.Add(-2 * time.Hour)}), signer.ErrTokenExpired,
			[]string{"profile S", "expired at " + now.Add(-time.Hour).UTC().Format("2006-01-02 15:04:05 UTC"), "oci session refresh --profile S"}},
		{"expired session", is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: now.Add(-30 * time.Hour), SessionEnd: now.Add(-6 * time.Hour)}), signer.ErrTokenExpired,
			[]string{"session ended", "oci session authenticate --profile-name S"}},
		{"not a JWT", "not-a-token", signer.ErrTokenMalformed, []string{"profile S", "not a JWT"}},
		{"empty token file", "", signer.ErrTokenMalformed, []string{"empty"}},
		{"truncated signature", valid[:len(valid)-20], signer.ErrTokenMalformed, []string{"truncated"}},
		{"token for another key", is.Mint(t, &other.PublicKey, signertest.TokenOptions{}), signer.ErrKeyMismatch, []string{"another key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := signertest.NewFolder(t)
			f.SessionProfile("S", key, tc.token)
			_, err := credentialsOf(t, f.ConfigPath(), "S")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q: %v", s, err)
				}
			}
			if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token[:20]) {
				t.Errorf("message quotes the token: %v", err)
			}
		})
	}
}

// A token minted without a jwk claim cannot be checked against the key; it
// is used as is, since OCI will judge it.
func TestTokenWithoutJWKIsUsed(t *testing.T) {
	key := signertest.Key(t, 2)
	f := signertest.NewFolder(t)
	f.SessionProfile("S", key, signertest.NewIssuer(t).Mint(t, &key.PublicKey, signertest.TokenOptions{NoJWK: true}))
	if _, err := credentialsOf(t, f.ConfigPath(), "S"); err != nil {
		t.Fatal(err)
	}
}

func TestTokenExpiresWhileInUse(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	f := signertest.NewFolder(t)
	start := time.Now()
	f.SessionProfile("S", key, is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: start}))
	clock := credentialstest.NewClock(start)
	cfg, err := openTest(t, f.ConfigPath(), credentials.WithClock(clock), credentials.WithSessionRefresh(false, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	src := cfg.Source("S")
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(time.Hour + time.Second))
	if _, err := src.Credentials(context.Background()); !errors.Is(err, signer.ErrTokenExpired) {
		t.Fatalf("after exp: %v", err)
	}
	// `oci session refresh` writes a new token: usable at once, no restart.
	f.Replace("sessions/S/token", []byte(is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: start.Add(time.Hour)})))
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatalf("after refresh: %v", err)
	}
}

func TestRotationOnDisk(t *testing.T) {
	k1, k2 := signertest.Key(t, 2), signertest.Key(t, 3)
	is := signertest.NewIssuer(t)
	f := signertest.NewFolder(t)
	sess := f.SessionProfile("S", k1, is.Mint(t, &k1.PublicKey, signertest.TokenOptions{}))
	var logs bytes.Buffer
	cfg, err := openTest(t, f.ConfigPath(), credentials.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	must := func(step string) *signer.Credentials {
		t.Helper()
		c, err := src.Credentials(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return c
	}
	first := must("first")

	// oci session refresh: same key, new token, rewritten in place.
	refreshed := is.Mint(t, &k1.PublicKey, signertest.TokenOptions{})
	f.Write(sess.TokenPath, []byte(refreshed+"\n"))
	if c := must("after refresh"); c.KeyID != "ST$"+refreshed || !c.Key.Equal(first.Key) {
		t.Fatal("refreshed token not picked up")
	}

	// A half-written token keeps the last good pair, and says why.
	f.Write(sess.TokenPath, []byte(refreshed[:len(refreshed)/2]))
	if c := must("half-written token"); c.KeyID != "ST$"+refreshed {
		t.Fatal("half-written token should keep the last good pair")
	}
	if !strings.Contains(logs.String(), "keeping the last good credentials") {
		t.Fatalf("no log of why:\n%s", logs.String())
	}

	// oci session authenticate: new key and new token, each by rename. In
	// between, the new key with the old token is not a pair: keep the old.
	f.Replace(sess.KeyPath, signertest.EncodeKey(t, k2, signertest.PKCS8, ""))
	if c := must("key renamed first"); c.KeyID != "ST$"+refreshed || !c.Key.Equal(k1) {
		t.Fatal("mixed pair served")
	}
	tok2 := is.Mint(t, &k2.PublicKey, signertest.TokenOptions{})
	f.Replace(sess.TokenPath, []byte(tok2))
	if c := must("both renamed"); c.KeyID != "ST$"+tok2 || !c.Key.Equal(k2) {
		t.Fatal("new pair not picked up")
	}
}

func TestConfigChangesWithoutRestart(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	f := signertest.NewFolder(t)
	f.SessionProfile("OLD", key, is.Mint(t, &key.PublicKey, signertest.TokenOptions{}))
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Source("NEW").Credentials(context.Background()); !errors.Is(err, signer.ErrProfileNotFound) {
		t.Fatalf("NEW before it exists: %v", err)
	}
	// oci session authenticate --profile-name NEW appends a section.
	newTok := is.Mint(t, &key.PublicKey, signertest.TokenOptions{})
	f.SessionProfile("NEW", key, newTok)
	c, err := cfg.Source("NEW").Credentials(context.Background())
	if err != nil || c.KeyID != "ST$"+newTok {
		t.Fatalf("NEW after append: %v", err)
	}
	// A changed value is seen too: the region of OLD.
	p, _ := cfg.Profile("OLD")
	data := strings.Replace(readString(t, f.ConfigPath()), "region=us-phoenix-1", "region=eu-zurich-1", 1)
	f.Replace("config", []byte(data))
	c, err = cfg.Source("OLD").Credentials(context.Background())
	if err != nil || c.Region != "eu-zurich-1" || p.Get("region") != "us-phoenix-1" {
		t.Fatalf("changed region not seen: %v %v", c, err)
	}
}

// Tokens and keys rotated by rename while many goroutines sign: every
// signature must come from a consistent pair. The check is the one OCI
// makes: the signature verifies with the public key in the token's jwk.
func TestRotationUnderConcurrentSigning(t *testing.T) {
	t.Parallel()
	keys := []*rsa.PrivateKey{signertest.Key(t, 2), signertest.Key(t, 3), signertest.Key(t, 4)}
	is := signertest.NewIssuer(t)
	f := signertest.NewFolder(t)
	sess := f.SessionProfile("S", keys[0], is.Mint(t, &keys[0].PublicKey, signertest.TokenOptions{}))
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	// The first pair is loaded before any rotation starts, as a running
	// server's would be.
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	var (
		stop     atomic.Bool
		signed   atomic.Int64
		seen     sync.Map // token -> true
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := src.Credentials(context.Background())
				if err != nil {
					failures.Add(1)
					t.Errorf("credentials: %v", err)
					return
				}
				s, err := signer.Sign(&signer.Request{Method: "GET", Host: "iaas.us-phoenix-1.oraclecloud.com", Target: "/20160918/instances"}, c, time.Now())
				if err != nil {
					failures.Add(1)
					t.Errorf("sign: %v", err)
					return
				}
				if err := verifyWithTokenJWK(s); err != nil {
					failures.Add(1)
					t.Errorf("mixed pair: %v", err)
					return
				}
				seen.Store(c.Token.Raw, true)
				signed.Add(1)
			}
		}()
	}
	const rotations = 24
	for i := 1; i <= rotations; i++ {
		k := keys[i%len(keys)]
		tok := is.Mint(t, &k.PublicKey, signertest.TokenOptions{})
		// Alternate which file lands first, and half the time refresh the
		// token in place (same key) the way `oci session refresh` does.
		switch i % 3 {
		case 0:
			f.Replace(sess.KeyPath, signertest.EncodeKey(t, k, signertest.PKCS1, ""))
			f.Replace(sess.TokenPath, []byte(tok))
		case 1:
			f.Replace(sess.TokenPath, []byte(tok))
			f.Replace(sess.KeyPath, signertest.EncodeKey(t, k, signertest.PKCS1, ""))
		case 2:
			f.Replace(sess.KeyPath, signertest.EncodeKey(t, k, signertest.PKCS1, ""))
			f.Write(sess.TokenPath, []byte(tok+"\n"))
		}
		// Let signers observe this pair before the next rotation.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := seen.Load(tok); ok || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if _, ok := seen.Load(tok); !ok {
			t.Fatalf("rotation %d never observed", i)
		}
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d failed or mixed signatures", failures.Load())
	}
	t.Logf("%d signatures across %d rotations, all from consistent pairs", signed.Load(), rotations)
}

// verifyWithTokenJWK checks a ST$ signature against the key its token names.
func verifyWithTokenJWK(s *signer.Signed) error {
	params, err := signertest.ParseAuthorization(s.Get("authorization"))
	if err != nil {
		return err
	}
	keyID, ok := strings.CutPrefix(params["keyId"], "ST$")
	if !ok {
		return fmt.Errorf("keyId %q is not a session token's", signer.MaskKeyID(params["keyId"]))
	}
	sig, err := base64.StdEncoding.DecodeString(params["signature"])
	if err != nil {
		return err
	}
	tok, err := signer.ParseToken(keyID)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(s.SigningString))
	return rsa.VerifyPKCS1v15(tok.PublicKey(), crypto.SHA256, sum[:], sig)
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
