package signer_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// The golden vectors come from ../shared/testdata; a copy lives in testdata so
// the suite runs from a bare clone.
type vectorFile struct {
	KeyID          string `json:"key_id"`
	PrivateKeyPEM  string `json:"private_key_pem"`
	FingerprintMD5 string `json:"fingerprint_of_key_md5"`
	Vectors        []struct {
		Name           string            `json:"name"`
		Method         string            `json:"method"`
		URL            string            `json:"url"`
		RequestHeaders map[string]string `json:"request_headers"`
		Body           *string           `json:"body"`
		BodyExcluded   bool              `json:"body_excluded_from_signature"`
		SignedHeaders  string            `json:"signed_headers"`
		SigningString  string            `json:"signing_string"`
		XContentSHA256 string            `json:"x_content_sha256"`
		Signature      string            `json:"signature"`
		Authorization  string            `json:"authorization"`
	} `json:"vectors"`
}

func loadVectors(t testing.TB) vectorFile {
	data, err := os.ReadFile("testdata/oci-signing-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) != 8 {
		t.Fatalf("want the 8 golden vectors, file has %d", len(vf.Vectors))
	}
	return vf
}

// The copy must not drift from the shared original where that exists.
func TestVectorCopyMatchesShared(t *testing.T) {
	shared, err := os.ReadFile("../../shared/testdata/oci-signing-vectors.json")
	if os.IsNotExist(err) {
		t.Log("../shared is not beside this clone; only the copy is checked")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	local, err := os.ReadFile("testdata/oci-signing-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, local) {
		t.Fatal("testdata/oci-signing-vectors.json differs from ../shared/testdata; copy it again")
	}
}

func TestGoldenVectors(t *testing.T) {
	vf := loadVectors(t)
	key, err := signer.ParsePrivateKey([]byte(vf.PrivateKeyPEM), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := signer.Fingerprint(&key.PublicKey); got != vf.FingerprintMD5 {
		t.Errorf("fingerprint = %s, want %s", got, vf.FingerprintMD5)
	}
	creds := &signer.Credentials{KeyID: vf.KeyID, Key: key, Kind: signer.KindAPIKey}
	for _, be := range testBackends(t, key) {
		for _, v := range vf.Vectors {
			t.Run(be+"/"+v.Name, func(t *testing.T) {
				u, err := url.Parse(v.URL)
				if err != nil {
					t.Fatal(err)
				}
				h := map[string][]string{}
				for k, val := range v.RequestHeaders {
					h[k] = []string{val}
				}
				req := &signer.Request{
					Method: v.Method,
					Host:   u.Host,
					Target: u.RequestURI(),
					Header: signer.HTTPHeader(h),
					Date:   v.RequestHeaders["date"],
				}
				if v.Body != nil {
					req.Body = []byte(*v.Body)
				}
				if got := signer.BodySigned(v.Method, req.Target); got == v.BodyExcluded && v.Method != "GET" && v.Method != "HEAD" && v.Method != "DELETE" {
					t.Errorf("BodySigned = %v, vector says body excluded = %v", got, v.BodyExcluded)
				}
				// A fixed clock far from the vector's date proves the date comes from the request.
				s, err := signer.SignWith(be, req, creds, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
				if err != nil {
					t.Fatal(err)
				}
				if s.SignedHeaders != v.SignedHeaders {
					t.Errorf("signed headers\n got %q\nwant %q", s.SignedHeaders, v.SignedHeaders)
				}
				if s.SigningString != v.SigningString {
					t.Errorf("signing string\n got %q\nwant %q", s.SigningString, v.SigningString)
				}
				if got := s.Get("authorization"); got != v.Authorization {
					t.Errorf("authorization\n got %s\nwant %s", got, v.Authorization)
				}
				if !bytes.Contains([]byte(s.Get("authorization")), []byte(`signature="`+v.Signature+`"`)) {
					t.Errorf("signature differs from %s", v.Signature)
				}
				if v.XContentSHA256 != "" && s.Get("x-content-sha256") != v.XContentSHA256 {
					t.Errorf("x-content-sha256 = %q, want %q", s.Get("x-content-sha256"), v.XContentSHA256)
				}
				if s.Get("date") != v.RequestHeaders["date"] {
					t.Errorf("date = %q", s.Get("date"))
				}
			})
		}
	}
}
