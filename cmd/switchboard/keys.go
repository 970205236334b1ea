package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// signingKey is a server signing key as Synapse stores it: one line
// "ed25519 <version> <unpadded base64 of the 32-byte seed>". The Matrix key
// ID (Server-Server API, "Retrieving server keys") is "ed25519:<version>".
type signingKey struct {
	Version string
	Key     ed25519.PrivateKey
}

// ID is the Matrix key ID, e.g. "ed25519:a_AbCd".
func (k signingKey) ID() string { return "ed25519:" + k.Version }

// maxKeyFileBytes bounds a signing key file; one key line is ~60 bytes.
const maxKeyFileBytes = 64 << 10

// parseSigningKey reads the first ed25519 key of a Synapse-format key file.
// Blank lines and lines starting with '#' are ignored; any other line must
// be a well-formed key.
func parseSigningKey(data []byte) (signingKey, error) {
	if len(data) > maxKeyFileBytes {
		return signingKey{}, fmt.Errorf("%w: larger than %d bytes", ErrKeyFile, maxKeyFileBytes)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxKeyFileBytes)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return signingKey{}, fmt.Errorf("%w: line %d: want \"ed25519 <version> <base64 seed>\", got %d fields", ErrKeyFile, line, len(f))
		}
		if f[0] != "ed25519" {
			return signingKey{}, fmt.Errorf("%w: line %d: algorithm %q is not ed25519", ErrKeyFile, line, f[0])
		}
		if !validKeyVersion(f[1]) {
			return signingKey{}, fmt.Errorf("%w: line %d: key version %q must be 1-32 of [A-Za-z0-9_]", ErrKeyFile, line, f[1])
		}
		seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[2], "="))
		if err != nil {
			return signingKey{}, fmt.Errorf("%w: line %d: seed is not base64: %v", ErrKeyFile, line, err)
		}
		if len(seed) != ed25519.SeedSize {
			return signingKey{}, fmt.Errorf("%w: line %d: seed is %d bytes, want %d", ErrKeyFile, line, len(seed), ed25519.SeedSize)
		}
		return signingKey{Version: f[1], Key: ed25519.NewKeyFromSeed(seed)}, nil
	}
	if err := sc.Err(); err != nil {
		return signingKey{}, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return signingKey{}, fmt.Errorf("%w: no key in file", ErrKeyFile)
}

// validKeyVersion: Matrix key IDs are "algorithm:identifier" where the
// identifier is [a-zA-Z0-9_] (Appendices, "Signing key identifiers").
func validKeyVersion(v string) bool {
	if v == "" || len(v) > 32 {
		return false
	}
	for _, r := range v {
		if r != '_' && (r < '0' || r > '9') && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// formatSigningKey is the inverse of parseSigningKey.
func formatSigningKey(k signingKey) []byte {
	return fmt.Appendf(nil, "ed25519 %s %s\n", k.Version, base64.RawStdEncoding.EncodeToString(k.Key.Seed()))
}

// newSigningKey makes a key with a Synapse-style version "a_XXXX".
func newSigningKey() (signingKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return signingKey{}, err
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return signingKey{}, err
	}
	v := []byte("a_")
	for _, x := range b {
		v = append(v, alnum[int(x)%len(alnum)])
	}
	return signingKey{Version: string(v), Key: priv}, nil
}

// loadOrCreateSigningKey reads the key file, creating it (mode 0600) when it
// does not exist. created reports whether a new key was written.
func loadOrCreateSigningKey(path string) (k signingKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := parseSigningKey(data)
		if err != nil {
			return signingKey{}, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return signingKey{}, false, fmt.Errorf("signing key: %w", err)
	}
	k, err = newSigningKey()
	if err != nil {
		return signingKey{}, false, err
	}
	if err := writeFileExclusive(path, formatSigningKey(k), 0o600); err != nil {
		return signingKey{}, false, fmt.Errorf("signing key: %w", err)
	}
	return k, true, nil
}

// loadOrCreateSecret reads a secret file, or generates 32 random bytes as
// hex into it (mode 0600).
func loadOrCreateSecret(path string) (secret string, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(data))
		if len(s) < minSecretLen {
			return "", false, fmt.Errorf("%w: %s: secret is shorter than %d characters", ErrConfig, path, minSecretLen)
		}
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	s, err := randomSecret()
	if err != nil {
		return "", false, err
	}
	if err := writeFileExclusive(path, []byte(s+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return s, true, nil
}

// randomSecret is 32 random bytes as 64 hex characters.
func randomSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// loadOrCreateTLS makes sure a certificate and key pair exists at the given
// paths, generating a self-signed one for hosts when neither file exists.
// A half-present pair is an error: switchboard never overwrites a file.
func loadOrCreateTLS(certPath, keyPath string, hosts []string) (created bool, err error) {
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return false, fmt.Errorf("TLS pair %s, %s: %w", certPath, keyPath, err)
		}
		return false, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return false, certErr
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return false, keyErr
	default:
		return false, fmt.Errorf("only one of %s and %s exists; remove it to generate a new pair", certPath, keyPath)
	}
	certPEM, keyPEM, err := selfSignedCert(hosts, time.Now())
	if err != nil {
		return false, err
	}
	if err := writeFileExclusive(keyPath, keyPEM, 0o600); err != nil {
		return false, err
	}
	if err := writeFileExclusive(certPath, certPEM, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// selfSignedCert makes an ECDSA P-256 server certificate for hosts (DNS
// names or IP literals) plus localhost and the loopback addresses, valid for
// three years.
func selfSignedCert(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	cn := "localhost"
	if len(hosts) > 0 && hosts[0] != "" {
		cn = hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Switchboard self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(3 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range append(hosts, "localhost", "127.0.0.1", "::1") {
		h = strings.Trim(h, "[]")
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// writeFileExclusive writes data to path only if path does not exist yet,
// atomically: readers never see a partial file and an existing file is
// never replaced.
func writeFileExclusive(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; not overwriting it", path)
		}
		return err
	}
	return nil
}
