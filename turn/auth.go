package turn

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 §9.2.2 long-term key is MD5 by definition.
	"crypto/sha1" //nolint:gosec // TURN REST passwords are HMAC-SHA1 by definition.
	"encoding/base64"
	"strconv"
	"sync"
	"time"
)

// restClockSkew is how far beyond MaxTTL a REST username may expire, to
// absorb clock differences between the homeserver and this relay.
const restClockSkew = 30 * time.Second

// RESTCredentials returns a TURN REST username and password for user, valid
// for ttl from now (draft-uberti-behave-turn-rest-00 §2.2, as used by the
// Matrix /voip/turnServer endpoint): the username is
// "<unix-expiry>:<user>" and the password is the base64 HMAC-SHA1 of the
// username keyed with the shared secret.
func RESTCredentials(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	return username, restPassword(secret, username)
}

func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// maxUsernameLen is the STUN USERNAME limit (RFC 8489 §14.3).
const maxUsernameLen = 513

// parseRESTUsername splits a TURN REST username "<unix-expiry>:<user>" at
// its first colon (Matrix user IDs contain colons themselves). The expiry is
// 1 to 18 ASCII digits; the user part must not be empty.
func parseRESTUsername(s string) (expiry int64, user string, err error) {
	if len(s) > maxUsernameLen {
		return 0, "", ErrBadUsername
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		expiry = expiry*10 + int64(s[i]-'0')
		i++
		if i > 18 {
			return 0, "", ErrBadUsername
		}
	}
	if i == 0 || i >= len(s)-1 || s[i] != ':' {
		return 0, "", ErrBadUsername
	}
	return expiry, s[i+1:], nil
}

// longTermKey is MD5(username ":" realm ":" password), RFC 8489 §9.2.2.
func longTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	return h.Sum(nil)
}

// authenticator maps a USERNAME and REALM to a user ID and the long-term key.
type authenticator struct {
	realm  string
	secret string
	maxTTL time.Duration
	static map[string]string
	now    func() time.Time
}

// authFailure labels for switchboard_turn_auth_failures_total.
const (
	authWrongRealm  = "wrong_realm"
	authUnknownUser = "unknown_user"
	authMalformed   = "malformed_username"
	authExpired     = "expired"
	authTooLong     = "ttl_too_long"
	authBadHMAC     = "bad_hmac"
	authStaleNonce  = "stale_nonce"
)

// lookup returns the user ID (the REST user part, or the static username)
// and the key to check MESSAGE-INTEGRITY with. On failure it returns the
// metric label of the reason and an error.
func (a *authenticator) lookup(username, realm string) (userID string, key []byte, label string, err error) {
	if realm != a.realm {
		return "", nil, authWrongRealm, ErrWrongRealm
	}
	if pw, ok := a.static[username]; ok {
		return username, longTermKey(username, realm, pw), "", nil
	}
	if a.secret == "" {
		return "", nil, authUnknownUser, ErrUnknownUser
	}
	expiry, user, err := parseRESTUsername(username)
	if err != nil {
		return "", nil, authMalformed, err
	}
	now := a.now().Unix()
	if expiry < now {
		return "", nil, authExpired, ErrCredentialExpired
	}
	if expiry-now > int64((a.maxTTL+restClockSkew)/time.Second) {
		return "", nil, authTooLong, ErrCredentialTooLong
	}
	return user, longTermKey(username, realm, restPassword(a.secret, username)), "", nil
}

// nonceBook remembers the nonces pion's server has handed out, so that the
// request inspector only answers 401 itself for requests whose nonce pion
// will accept; requests with any other nonce go to pion, which answers 438
// (RFC 8489 §9.2.4). pion's nonces are valid for an hour and change once a
// minute, so the book stays small. It uses the wall clock, as pion does.
type nonceBook struct {
	mu   sync.Mutex
	seen map[string]time.Time // guarded by mu
}

// nonceTrust is how long after first seeing a nonce the book vouches for
// it; pion accepts it for up to 60 minutes.
const nonceTrust = 55 * time.Minute

func (b *nonceBook) add(nonce string) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = make(map[string]time.Time)
	}
	if _, ok := b.seen[nonce]; ok {
		return
	}
	for n, t := range b.seen {
		if now.Sub(t) > nonceTrust {
			delete(b.seen, n)
		}
	}
	if len(b.seen) < 1024 {
		b.seen[nonce] = now
	}
}

func (b *nonceBook) known(nonce string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.seen[nonce]
	return ok && time.Since(t) <= nonceTrust
}
