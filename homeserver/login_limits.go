package homeserver

import (
	"time"
)

// Login, registration and admin-nonce limits (README, "Abuse and limits").
// The model is Synapse's rc_login (address, account, failed_attempts),
// with one change: only failures count against an address, so one person
// guessing passwords behind a NAT cannot lock out the others there for
// longer than a refill (a right password never spends a token):
//   - failed logins per client IP: Server.loginLimit, checked before the
//     password is, spent only when it is wrong;
//   - failed logins per account, from any address: abuse.loginAccount,
//     the same way (this one slows guessing of one account's password);
//   - registration per client IP: abuse.register, a bucket of its own;
//   - GET /_synapse/admin/v1/register nonces per client IP: abuse.nonce,
//     and at most maxRegistrationNonces stored (oldest dropped).

// maxRegistrationNonces bounds the stored shared-secret registration
// nonces; each also expires after registrationNonceTTL.
const maxRegistrationNonces = 1000

// abuseLimits are the limiters of this file; all nil when limits are off.
type abuseLimits struct {
	loginAccount *limiter
	register     *limiter
	nonce        *limiter
}

func newAbuseLimits(rl RateLimitConfig, now func() time.Time) abuseLimits {
	return abuseLimits{
		loginAccount: newLimiter(rl.LoginAccountPerSecond, rl.LoginAccountBurst, now),
		register:     newLimiter(rl.RegisterPerSecond, rl.RegisterBurst, now),
		// A nonce is fetched once per shared-secret registration.
		nonce: newLimiter(1, 10, now),
	}
}

// peek answers 429 when key's bucket holds less than one token, without
// taking one.
func (l *limiter) peek(key string) *MatrixError {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	b := l.buckets[key]
	l.mu.Unlock()
	if b == nil {
		return nil
	}
	if tokens := b.TokensAt(now); tokens < 1 {
		return l.exceeded(time.Duration((1 - tokens) / l.perSec * float64(time.Second)))
	}
	return nil
}

// spend takes a token for key (a failure happened); an empty bucket stays
// empty.
func (l *limiter) spend(key string) {
	_ = l.allow(key)
}

// loginAllowed is checked before a password: 429 while the client's
// address or the account has used up its failures.
func (s *Server) loginAllowed(ip, userID string) *MatrixError {
	if err := s.loginLimit.peek("login:" + ip); err != nil {
		return err
	}
	return s.abuse.loginAccount.peek(userID)
}

// loginFailed records a wrong password (or unknown user) against both.
func (s *Server) loginFailed(ip, userID string) {
	s.loginLimit.spend("login:" + ip)
	s.abuse.loginAccount.spend(userID)
}
