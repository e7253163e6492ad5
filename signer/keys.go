package signer

import (
	"bytes"
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/youmark/pkcs8"
)

// ParsePrivateKey reads an RSA private key in any PEM form OCI tooling
// writes: PKCS#1, PKCS#8, encrypted PKCS#8 (PBES2) and legacy encrypted PEM
// (Proc-Type/DEK-Info). Text after the PEM block, such as the OCI_API_KEY
// line console-made keys carry, is ignored. The errors wrap ErrBadKey,
// ErrPassphraseMissing or ErrPassphraseWrong and never quote key material.
func ParsePrivateKey(data []byte, passphrase []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, &Error{Kind: ErrBadKey, Detail: "private key file is empty"}
		}
		return nil, &Error{Kind: ErrBadKey, Detail: "private key file holds no PEM block", Hint: "expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----"}
	}
	var (
		key any
		err error
	)
	switch {
	case strings.Contains(block.Type, "PUBLIC KEY"):
		return nil, &Error{Kind: ErrBadKey, Detail: "the key file holds a public key (" + block.Type + "); signing needs the private key",
			Hint: "point key_file at the private key (oci_api_key.pem, not oci_api_key_public.pem)"}
	case block.Type == "ENCRYPTED PRIVATE KEY":
		if len(passphrase) == 0 {
			return nil, passphraseMissing()
		}
		if err := checkKDFCost(block.Bytes); err != nil {
			return nil, &Error{Kind: ErrBadKey, Detail: "encrypted PKCS#8 key asks for unreasonable key-derivation work", Err: err}
		}
		key, err = pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
		if err != nil {
			if strings.Contains(err.Error(), "incorrect password") {
				return nil, passphraseWrong()
			}
			return nil, &Error{Kind: ErrBadKey, Detail: "cannot decrypt PKCS#8 private key", Err: err}
		}
	//lint:ignore SA1019 legacy encrypted PEM is what `openssl genrsa -aes128` writes and OCI accepts.
	case x509.IsEncryptedPEMBlock(block):
		if len(passphrase) == 0 {
			return nil, passphraseMissing()
		}
		//lint:ignore SA1019 the same legacy format, which OCI accepts: decrypting it is the point.
		der, derr := x509.DecryptPEMBlock(block, passphrase)
		if derr != nil {
			// A wrong passphrase usually fails the padding check; when it
			// does not, the DER below fails to parse: both mean wrong passphrase.
			return nil, passphraseWrong()
		}
		key, err = parseDER(block.Type, der)
		if err != nil {
			return nil, passphraseWrong()
		}
	default:
		key, err = parseDER(block.Type, block.Bytes)
		if err != nil {
			return nil, &Error{Kind: ErrBadKey, Detail: fmt.Sprintf("cannot parse %q PEM block", block.Type), Err: err}
		}
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, &Error{Kind: ErrBadKey, Detail: fmt.Sprintf("private key is %T; OCI request signing needs an RSA key", key)}
	}
	if err := rsaKey.Validate(); err != nil {
		return nil, &Error{Kind: ErrBadKey, Detail: "RSA key fails validation", Err: err}
	}
	rsaKey.Precompute()
	return rsaKey, nil
}

func parseDER(blockType string, der []byte) (any, error) {
	switch blockType {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(der)
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(der)
	}
	// Some tools label keys loosely: try both encodings before giving up.
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("neither PKCS#1 nor PKCS#8")
}

func passphraseMissing() error {
	return &Error{Kind: ErrPassphraseMissing, Detail: "private key is encrypted and the profile has no pass_phrase", Hint: "add pass_phrase=... to the profile"}
}

func passphraseWrong() error {
	return &Error{Kind: ErrPassphraseWrong, Detail: "pass_phrase does not decrypt the private key", Hint: "check pass_phrase in the profile"}
}

// Fingerprint returns the fingerprint OCI shows for a public key: the MD5 of
// its DER SubjectPublicKeyInfo, as colon-separated lower-case hex.
func Fingerprint(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := md5.Sum(der)
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, len(sum)*3-1)
	for i, b := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hexdigits[b>>4], hexdigits[b&0xf])
	}
	return string(out)
}
