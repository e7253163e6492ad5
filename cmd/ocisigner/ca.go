package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocisigner/ocisigner/intercept"
	"github.com/ocisigner/ocisigner/internal/atomicfile"
	"github.com/ocisigner/ocisigner/signer"
)

// defaultSystemRoots is Debian's CA bundle, also in the distroless image.
const defaultSystemRoots = "/etc/ssl/certs/ca-certificates.crt"

// runCA prints the interception CA's certificate, the bytes the admin
// port's /ca.pem serves, or writes a bundle of the system roots and it.
// Without --init it reads the certificate only: printing it needs no
// access to the key.
func runCA(_ context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("ca", flag.ContinueOnError)
	var f caFlags
	f.register(fs, false)
	bundle := fs.String("bundle", "", "write the system roots and the CA to this file (mode 0644; - for stdout) instead of printing the CA: for clients whose trust store is a file that replaces the system's (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, curl --cacert)")
	roots := fs.String("system-roots", defaultSystemRoots, "the system roots --bundle starts from")
	initCA := fs.Bool("init", false, "first create the CA in --state-dir if it holds none, as serve --intercept would on its first start, without credentials or a server: for a CA made once and handed to every replica (serve --ca-cert/--ca-key, a Kubernetes Secret; docs/kubernetes.md)")
	var allowHosts stringList
	fs.Var(&allowHosts, "allow-host", "with --init: the serve --allow-host patterns the new CA's name constraints also cover, beyond the OCI realm domains; repeatable")
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, func() error {
		if *initCA && f.caCert != "" {
			return errors.New("--init creates the CA in --state-dir; --ca-cert names one that exists")
		}
		return nil
	}); !ok {
		return exit
	}
	path, err := f.certPath(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner ca:", err)
		return exitUsage
	}
	if *initCA {
		if err := initStateCA(f, allowHosts, getenv, stderr); err != nil {
			fmt.Fprintln(stderr, "ocisigner ca:", err)
			return exitConfig
		}
	}
	certPEM, err := readCACert(path)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner ca:", err)
		return exitConfig
	}
	if *bundle == "" {
		_, _ = stdout.Write(certPEM)
		return exitOK
	}
	sys, err := os.ReadFile(*roots)
	if err != nil {
		fmt.Fprintf(stderr, "ocisigner ca: the system roots: %v (name another file with --system-roots)\n", err)
		return exitConfig
	}
	if *bundle == "-" {
		_, _ = stdout.Write(intercept.Bundle(sys, certPEM))
		return exitOK
	}
	if err := atomicfile.Write(*bundle, intercept.Bundle(sys, certPEM), 0o644); err != nil {
		fmt.Fprintln(stderr, "ocisigner ca:", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "wrote %s: %s and the interception CA %s\n", *bundle, *roots, path)
	return exitOK
}

// initStateCA loads or creates the CA in the state directory, as serve
// --intercept does, and says where it is (never the key itself).
func initStateCA(f caFlags, allowHosts []string, getenv environ, stderr io.Writer) error {
	dir, err := f.dir(getenv)
	if err != nil {
		return err
	}
	ca, err := intercept.LoadOrCreate(dir, interceptPatterns(allowHosts), time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "the interception CA is in %s (%s; %s, mode 0600, is its key): %v\n",
		dir, intercept.CertFileName, intercept.KeyFileName, ca)
	return nil
}

// readCACert reads a CA certificate file and returns its certificate,
// re-encoded: whatever else the file holds is left out.
func readCACert(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no CA certificate at %s: ocisigner serve --intercept creates it on its first start (with the same --state-dir)", path)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", path)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
}

// Names in a throwaway config.
const (
	throwawayKeyFile = "throwaway_key.pem"
	throwawayConfig  = "config"
)

// runClientConfig writes an OCI config for SDKs that insist on one: a fresh
// RSA key that is never registered anywhere, user and tenancy OCIDs that
// name no one, and the region the gateway signs for. Behind interception
// the gateway replaces the signature such an SDK makes with the real one.
func runClientConfig(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	fs := flag.NewFlagSet("client-config", flag.ContinueOnError)
	var cf credentialFlags
	cf.register(fs)
	dir := fs.String("dir", "", "folder to write config and "+throwawayKeyFile+" into (created 0700); required")
	if _, exit, ok := parseCommand(fs, args, getenv, stdout, stderr, cf.settle(getenv), func() error {
		if *dir == "" {
			return errors.New("--dir is required: the folder the throwaway config and key go into")
		}
		return nil
	}); !ok {
		return exit
	}
	region, err := regionOf(ctx, &cf, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "ocisigner client-config: the region of profile %s: %v (or give --region)\n", cf.profileName(getenv), err)
		return exitConfig
	}
	path, err := writeClientConfig(*dir, region)
	if err != nil {
		fmt.Fprintln(stderr, "ocisigner client-config:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "wrote %s (region %s) and its throwaway key; the gateway re-signs what it signs.\n", path, region.ID)
	fmt.Fprintf(stdout, "export OCI_CLI_CONFIG_FILE=%s OCI_CONFIG_FILE=%s\n", path, path)
	return exitOK
}

// writeClientConfig writes dir/config and dir/throwaway_key.pem (0600).
func writeClientConfig(dir string, region signer.Region) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	keyPath := filepath.Join(abs, throwawayKeyFile)
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# A throwaway OCI config (ocisigner client-config) for SDKs that insist on one,\n")
	fmt.Fprintf(&b, "# used behind ocisigner's HTTPS interception: its key is registered nowhere and\n")
	fmt.Fprintf(&b, "# its OCIDs name no one; the gateway replaces every signature made with it.\n")
	fmt.Fprintf(&b, "[DEFAULT]\nuser=%s\nfingerprint=%s\ntenancy=%s\nregion=%s\nkey_file=%s\n",
		throwawayOCID("user", region.Realm), fingerprint(pub), throwawayOCID("tenancy", region.Realm), region.ID, keyPath)
	path := filepath.Join(abs, throwawayConfig)
	return path, atomicfile.Write(path, b.Bytes(), 0o600)
}

// throwawayOCID is an OCID of the right shape that names no one.
func throwawayOCID(kind, realm string) string {
	r := make([]byte, 16)
	_, _ = rand.Read(r)
	return "ocid1." + kind + "." + strings.ToLower(realm) + "..ocisignerthrowaway" + hex.EncodeToString(r)
}

// fingerprint is an API key's fingerprint as OCI writes it: the MD5 of the
// public key's DER, in colon-separated hex.
func fingerprint(pubDER []byte) string {
	sum := md5.Sum(pubDER)
	parts := make([]string, len(sum))
	for i, c := range sum {
		parts[i] = hex.EncodeToString([]byte{c})
	}
	return strings.Join(parts, ":")
}
