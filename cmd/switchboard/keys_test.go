package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSigningKeyRoundTrip(t *testing.T) {
	k, err := newSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Version, "a_") || !validKeyVersion(k.Version) {
		t.Errorf("version %q", k.Version)
	}
	line := formatSigningKey(k)
	if !bytes.HasPrefix(line, []byte("ed25519 "+k.Version+" ")) || bytes.Contains(line, []byte("=")) {
		t.Errorf("not Synapse's format (unpadded base64): %q", line)
	}
	back, err := parseSigningKey(line)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID() != "ed25519:"+k.Version || !back.Key.Equal(k.Key) {
		t.Errorf("round trip changed the key: %v", back.ID())
	}
	sig := ed25519.Sign(back.Key, []byte("msg"))
	if !ed25519.Verify(k.Key.Public().(ed25519.PublicKey), []byte("msg"), sig) {
		t.Error("parsed key does not sign like the original")
	}
}

func TestParseSigningKeyKnownVector(t *testing.T) {
	// A seed of 32 zero bytes is 43 'A's in unpadded base64.
	file := "# comment\n\ned25519 a_zero " + strings.Repeat("A", 43) + "\ned25519 second " + strings.Repeat("B", 43) + "\n"
	k, err := parseSigningKey([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := ed25519.NewKeyFromSeed(make([]byte, 32))
	if k.ID() != "ed25519:a_zero" || !k.Key.Equal(want) {
		t.Errorf("got %s, want the zero-seed key", k.ID())
	}
	// Padded base64, as some tools write it, is accepted too.
	if _, err := parseSigningKey([]byte("ed25519 a_zero " + strings.Repeat("A", 43) + "=\n")); err != nil {
		t.Errorf("padded seed: %v", err)
	}
}

func TestParseSigningKeyErrors(t *testing.T) {
	seed := strings.Repeat("A", 43)
	for name, in := range map[string]string{
		"empty":         "",
		"only comments": "# x\n",
		"two fields":    "ed25519 a_x\n",
		"algorithm":     "rsa a_x " + seed,
		"version chars": "ed25519 a-x " + seed,
		"short seed":    "ed25519 a_x AAAA",
		"not base64":    "ed25519 a_x " + strings.Repeat("!", 43),
		"too big":       strings.Repeat("#", maxKeyFileBytes+1),
	} {
		if _, err := parseSigningKey([]byte(in)); !errors.Is(err, ErrKeyFile) {
			t.Errorf("%s: got %v, want ErrKeyFile", name, err)
		}
	}
}

func TestLoadOrCreateReusesFiles(t *testing.T) {
	dir := t.TempDir()
	kp := filepath.Join(dir, "sub", "signing.key")
	k1, created, err := loadOrCreateSigningKey(kp)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	k2, created, err := loadOrCreateSigningKey(kp)
	if err != nil || created {
		t.Fatalf("second: %v %v", created, err)
	}
	if k1.ID() != k2.ID() || !k1.Key.Equal(k2.Key) {
		t.Error("signing key changed on reload")
	}
	if st, _ := os.Stat(kp); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode().Perm())
	}

	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if created, err := loadOrCreateTLS(cert, key, []string{"example.org"}); err != nil || !created {
		t.Fatalf("tls first: %v %v", created, err)
	}
	before, _ := os.ReadFile(cert)
	if created, err := loadOrCreateTLS(cert, key, []string{"example.org"}); err != nil || created {
		t.Fatalf("tls second: %v %v", created, err)
	}
	after, _ := os.ReadFile(cert)
	if !bytes.Equal(before, after) {
		t.Error("certificate regenerated")
	}
	os.Remove(key)
	if _, err := loadOrCreateTLS(cert, key, nil); err == nil {
		t.Error("half a pair accepted")
	}

	s1, created, err := loadOrCreateSecret(filepath.Join(dir, "secret"))
	if err != nil || !created || len(s1) != 64 {
		t.Fatalf("secret: %q %v %v", s1, created, err)
	}
	s2, _, err := loadOrCreateSecret(filepath.Join(dir, "secret"))
	if err != nil || s1 != s2 {
		t.Errorf("secret changed: %v", err)
	}
}

func TestGenerateKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	if err := a.run(context.Background(), []string{"generate-keys", "--data-dir", dir, "--server-name", "matrix.example.org:8448"}); err != nil {
		t.Fatalf("generate-keys: %v %s", err, stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, signingKeyName))
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseSigningKey(data)
	if err != nil {
		t.Fatalf("written key does not parse: %v", err)
	}
	if !strings.Contains(stdout.String(), k.ID()) {
		t.Errorf("output %q does not name key %s", stdout.String(), k.ID())
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsCertName), filepath.Join(dir, tlsKeyName))
	if err != nil {
		t.Fatalf("TLS pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("matrix.example.org"); err != nil {
		t.Errorf("certificate is not for the server name: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("certificate is not for loopback: %v", err)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Error("no serverAuth usage")
	}

	// A second run must refuse and leave the key alone.
	if err := a.run(context.Background(), []string{"generate-keys", "--output", dir}); err == nil {
		t.Error("second run overwrote the keys")
	}
	again, _ := os.ReadFile(filepath.Join(dir, signingKeyName))
	if !bytes.Equal(again, data) {
		t.Error("signing key file changed")
	}
	if err := a.run(context.Background(), []string{"generate-keys"}); !errors.Is(err, ErrUsage) {
		t.Errorf("missing --data-dir: got %v", err)
	}
}
