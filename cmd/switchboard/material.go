package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// material is what serve reads or generates in the data directory before it
// opens any socket: the signing key, secrets and TLS configurations.
type material struct {
	key                signingKey
	turnSecret         string
	registrationSecret string
	// clientTLS is nil when the client API is plain HTTP.
	clientTLS *tls.Config
	// federationTLS is nil when federation is off.
	federationTLS *tls.Config
	// turnTLS is nil when TURN over TLS is off.
	turnTLS *tls.Config
}

// prepareMaterial creates the data directory and loads, or on first start
// generates, the signing key, the self-signed TLS pair and the secrets that
// the configuration leaves to switchboard. Generated files are never
// overwritten later.
func prepareMaterial(cfg *Config, dev bool, log *slog.Logger) (*material, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: data_dir: %w", ErrConfig, err)
	}
	m := &material{}
	key, created, err := loadOrCreateSigningKey(cfg.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("signing_key_file: %w", err)
	}
	if created {
		log.Info("generated a new signing key", "path", cfg.SigningKeyFile, "key_id", key.ID())
	}
	m.key = key

	needFed := cfg.Federation.Listen != ""
	needTURNTLS := cfg.TURN.Enabled && cfg.TURN.TLSListen != ""
	if (needFed || needTURNTLS) && cfg.generatedTLS() {
		host, _, _ := splitServerName(cfg.ServerName)
		hosts := []string{host}
		if cfg.PublicIP != "" {
			hosts = append(hosts, cfg.PublicIP)
		}
		created, err := loadOrCreateTLS(cfg.Federation.TLSCert, cfg.Federation.TLSKey, hosts)
		if err != nil {
			return nil, fmt.Errorf("federation.tls_cert: %w", err)
		}
		if created {
			log.Info("generated a self-signed TLS certificate", "cert", cfg.Federation.TLSCert, "key", cfg.Federation.TLSKey)
		}
		if !dev {
			log.Warn("federation uses a self-signed certificate that other servers will refuse; set federation.tls_cert and federation.tls_key to a certificate for the server name",
				"cert", cfg.Federation.TLSCert)
		}
	}
	if needFed {
		if m.federationTLS, err = loadTLS(cfg.Federation.TLSCert, cfg.Federation.TLSKey, true); err != nil {
			return nil, fmt.Errorf("%w: federation.tls_cert: %w", ErrConfig, err)
		}
	}
	if needTURNTLS {
		if m.turnTLS, err = loadTLS(cfg.TURN.TLSCert, cfg.TURN.TLSKey, false); err != nil {
			return nil, fmt.Errorf("%w: turn.tls_cert: %w", ErrConfig, err)
		}
	}
	if cfg.Client.TLSCert != "" {
		if m.clientTLS, err = loadTLS(cfg.Client.TLSCert, cfg.Client.TLSKey, true); err != nil {
			return nil, fmt.Errorf("%w: client.tls_cert: %w", ErrConfig, err)
		}
	}

	m.turnSecret = cfg.TURN.SharedSecret
	if cfg.TURN.Enabled && m.turnSecret == "" {
		path := filepath.Join(cfg.DataDir, turnSecretName)
		s, created, err := loadOrCreateSecret(path)
		if err != nil {
			return nil, fmt.Errorf("turn.shared_secret: %w", err)
		}
		if created {
			log.Info("generated a TURN shared secret", "path", path)
		}
		m.turnSecret = s
	}
	m.registrationSecret = cfg.Registration.SharedSecret
	if dev && m.registrationSecret == "" {
		path := filepath.Join(cfg.DataDir, registrationSecretName)
		s, _, err := loadOrCreateSecret(path)
		if err != nil {
			return nil, fmt.Errorf("registration.shared_secret: %w", err)
		}
		m.registrationSecret = s
	}
	return m, nil
}

// loadTLS loads a PEM pair into a server tls.Config (TLS 1.2 or later).
// http adds the ALPN protocols for HTTP/2 and HTTP/1.1.
func loadTLS(certFile, keyFile string, http bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if http {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c, nil
}
