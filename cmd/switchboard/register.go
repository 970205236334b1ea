package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// registerPath is Synapse's shared-secret registration admin API, which the
// homeserver implements so that `switchboard register` and Synapse's
// register_new_matrix_user both work.
const registerPath = "/_synapse/admin/v1/register"

// registerOptions is the parsed command line of `switchboard register`.
type registerOptions struct {
	url, configPath, secret, dataDir string
	user, password, passwordFile     string
	admin                            bool
	// set holds serve's option flags given to register (--client-listen
	// ...), layered over the file and the environment as serve does.
	set []setting
}

// register runs `switchboard register`: it fetches a nonce, then posts the
// new user with an HMAC-SHA1 over nonce, user, password and admin flag keyed
// with the registration shared secret.
func (a *app) register(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("switchboard register", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var o registerOptions
	fs.StringVar(&o.url, "url", "", "client API base URL (default: the client listener serve would bind, http://127.0.0.1:8008 unless configured)")
	fs.StringVar(&o.configPath, "config", a.getenv(envPrefix+"CONFIG"), "read registration.shared_secret from this config file")
	fs.StringVar(&o.secret, "shared-secret", "", "the registration shared secret (env SWITCHBOARD_REGISTRATION_SHARED_SECRET)")
	fs.StringVar(&o.dataDir, "data-dir", "", "read the secret --dev generated in this data directory")
	fs.StringVar(&o.user, "user", "", "localpart of the new user, e.g. alice (required)")
	fs.StringVar(&o.password, "password", "", "password (visible to other local users; prefer --password-file or the prompt)")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the password from the first line of this file")
	fs.BoolVar(&o.admin, "admin", false, "make the user a server admin")
	// serve's flags too, so that the command line serve was started with
	// finds the same client listener.
	addOptionFlags(fs, &o.set)
	fs.Usage = func() {
		fmt.Fprint(a.stderr, "Usage: switchboard register [--config FILE | --data-dir DIR] --user NAME [--admin] [serve's flags]\n\n"+
			"The client API is found as serve finds it: the file, then SWITCHBOARD_* environment\n"+
			"variables, then flags such as --client-listen; --url overrides all of them.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: register takes no arguments, got %q", ErrUsage, fs.Args())
	}
	user, err := registerLocalpart(o.user)
	if err != nil {
		return fmt.Errorf("%w: --user %w", ErrUsage, err)
	}
	secret, baseURL, err := a.registerSecretAndURL(o)
	if err != nil {
		return err
	}
	password, err := a.registerPassword(o)
	if err != nil {
		return err
	}
	res, err := registerUser(ctx, http.DefaultClient, baseURL, secret, user, password, o.admin)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "registered %s (admin: %t)\n", res.UserID, o.admin)
	return nil
}

// registerSecretAndURL picks the shared secret from --shared-secret, the
// environment, --data-dir (a --dev server's generated secret) or the layered
// configuration (in that order), and the base URL from --url or the client
// listener that serve would bind with the same file, environment and flags.
func (a *app) registerSecretAndURL(o registerOptions) (secret, baseURL string, err error) {
	secret, baseURL = o.secret, o.url
	if secret == "" {
		secret = a.getenv(envPrefix + "REGISTRATION_SHARED_SECRET")
	}
	if secret == "" && o.dataDir != "" {
		data, err := os.ReadFile(filepath.Join(o.dataDir, registrationSecretName))
		if err != nil {
			return "", "", fmt.Errorf("%w: --data-dir: %w", ErrUsage, err)
		}
		secret = strings.TrimSpace(string(data))
	}
	cfg := defaultConfig()
	if err := layerConfig(&cfg, o.configPath, a.getenv, o.set); err != nil {
		return "", "", err
	}
	if secret == "" {
		secret = cfg.Registration.SharedSecret
	}
	if secret == "" {
		return "", "", fmt.Errorf("%w: no shared secret: give --config FILE (registration.shared_secret), --shared-secret, or --data-dir DIR for a --dev server", ErrUsage)
	}
	if baseURL == "" && cfg.Client.Listen != "" {
		baseURL = httpURL(cfg.Client.Listen, cfg.Client.TLSCert != "")
	}
	if baseURL == "" {
		baseURL = "http://127.0.0.1:" + defaultClientPort
	}
	return secret, strings.TrimRight(baseURL, "/"), nil
}

// registerPassword takes --password, the first line of --password-file, a
// no-echo prompt on a terminal, or one line of standard input.
func (a *app) registerPassword(o registerOptions) (string, error) {
	if o.password != "" {
		return o.password, nil
	}
	if o.passwordFile != "" {
		data, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return "", fmt.Errorf("%w: --password-file: %w", ErrUsage, err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		if line = strings.TrimSuffix(line, "\r"); line == "" {
			return "", fmt.Errorf("%w: --password-file %s: first line is empty", ErrUsage, o.passwordFile)
		}
		return line, nil
	}
	if f, ok := a.stdin.(*os.File); ok && isTerminal(f) {
		p1, err := promptNoEcho(f, a.stderr, "Password: ")
		if err != nil {
			return "", err
		}
		p2, err := promptNoEcho(f, a.stderr, "Confirm password: ")
		if err != nil {
			return "", err
		}
		if p1 != p2 {
			return "", fmt.Errorf("%w: passwords do not match", ErrUsage)
		}
		if p1 == "" {
			return "", fmt.Errorf("%w: empty password", ErrUsage)
		}
		return p1, nil
	}
	if a.stdin == nil {
		return "", fmt.Errorf("%w: no password: give --password-file FILE", ErrUsage)
	}
	line, err := bufio.NewReader(io.LimitReader(a.stdin, 4096)).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err == nil || errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w: no password: give --password-file FILE, or type it at a terminal", ErrUsage)
		}
		return "", err
	}
	return line, nil
}

// registerResult is the admin API's answer.
type registerResult struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
	HomeServer  string `json:"home_server"`
}

// registerMAC is hex(HMAC-SHA1(secret, nonce NUL user NUL password NUL
// "admin"|"notadmin")), as Synapse's shared-secret registration defines it.
func registerMAC(secret, nonce, user, password string, admin bool) string {
	m := hmac.New(sha1.New, []byte(secret))
	kind := "notadmin"
	if admin {
		kind = "admin"
	}
	for i, part := range []string{nonce, user, password, kind} {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(part))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// maxRegisterResponse bounds what is read of an admin API answer.
const maxRegisterResponse = 64 << 10

// registerUser performs the two requests of shared-secret registration.
func registerUser(ctx context.Context, client *http.Client, baseURL, secret, user, password string, admin bool) (*registerResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := doJSON(ctx, client, http.MethodGet, baseURL+registerPath, nil, &nonce); err != nil {
		return nil, fmt.Errorf("%w: getting a nonce: %w", ErrRegister, err)
	}
	if nonce.Nonce == "" {
		return nil, fmt.Errorf("%w: the server sent no nonce", ErrRegister)
	}
	body := map[string]any{
		"nonce":    nonce.Nonce,
		"username": user,
		"password": password,
		"admin":    admin,
		"mac":      registerMAC(secret, nonce.Nonce, user, password, admin),
	}
	var res registerResult
	if err := doJSON(ctx, client, http.MethodPost, baseURL+registerPath, body, &res); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegister, err)
	}
	if res.UserID == "" {
		return nil, fmt.Errorf("%w: the server answered without a user_id", ErrRegister)
	}
	return &res, nil
}

// doJSON sends a JSON request and decodes a 200 answer into out; any other
// status becomes an error quoting the Matrix errcode and error.
func doJSON(ctx context.Context, client *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return fmt.Errorf("cannot reach %s (is switchboard running there?): %w", url, err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRegisterResponse))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var merr struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(data, &merr) == nil && merr.Errcode != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, url, resp.StatusCode, merr.Errcode, merr.Error)
		}
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: bad JSON answer: %w", method, url, err)
	}
	return nil
}

// registerLocalpart accepts "alice" or "@alice:server" and checks the
// localpart grammar (Matrix spec, Appendices, "User Identifiers":
// a-z, 0-9, ".", "_", "=", "-", "/", "+").
func registerLocalpart(s string) (string, error) {
	if strings.HasPrefix(s, "@") {
		s, _, _ = strings.Cut(s[1:], ":")
	}
	if s == "" {
		return "", errors.New("is required, e.g. --user alice")
	}
	if len(s) > 255 {
		return "", errors.New("is longer than 255 characters")
	}
	for _, r := range s {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || strings.ContainsRune("._=-/+", r)
		if !ok {
			return "", fmt.Errorf("%q may contain only a-z, 0-9 and . _ = - / +", s)
		}
	}
	return s, nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptNoEcho reads one line from the terminal f with echo turned off.
func promptNoEcho(f *os.File, prompt io.Writer, text string) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	fmt.Fprint(prompt, text)
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(prompt)
	}()
	line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
