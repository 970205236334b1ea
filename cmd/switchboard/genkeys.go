package main

import (
	"flag"
	"fmt"
	"path/filepath"
)

// generateKeys runs `switchboard generate-keys`: a Synapse-format ed25519
// signing key and a self-signed TLS pair in a directory. Existing files are
// never overwritten.
func (a *app) generateKeys(args []string) error {
	fs := flag.NewFlagSet("switchboard generate-keys", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var dir, serverName string
	fs.StringVar(&dir, "data-dir", "", "directory to write signing.key, tls.crt and tls.key into")
	fs.StringVar(&dir, "output", "", "same as --data-dir")
	fs.StringVar(&serverName, "server-name", "localhost", "server name the TLS certificate is for")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: generate-keys takes no arguments, got %q", ErrUsage, fs.Args())
	}
	if dir == "" {
		return fmt.Errorf("%w: --data-dir is required, e.g. switchboard generate-keys --data-dir /var/lib/switchboard", ErrUsage)
	}
	host, _, err := splitServerName(serverName)
	if err != nil {
		return fmt.Errorf("%w: --server-name %w", ErrUsage, err)
	}
	keyPath := filepath.Join(dir, signingKeyName)
	certPath := filepath.Join(dir, tlsCertName)
	tlsKeyPath := filepath.Join(dir, tlsKeyName)
	for _, p := range []string{keyPath, certPath, tlsKeyPath} {
		if fileExists(p) {
			return fmt.Errorf("%s already exists; generate-keys never overwrites keys (move it away first)", p)
		}
	}
	k, created, err := loadOrCreateSigningKey(keyPath)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("%s appeared while generating; not overwriting it", keyPath)
	}
	if _, err := loadOrCreateTLS(certPath, tlsKeyPath, []string{host}); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "signing key %s (%s)\nTLS certificate %s\nTLS key %s\n", keyPath, k.ID(), certPath, tlsKeyPath)
	return nil
}
