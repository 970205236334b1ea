-- Account-side indexes: one-time key claims and counts look keys up by
-- algorithm, and expired OpenID tokens are swept by expiry.
CREATE INDEX one_time_keys_alg ON one_time_keys (user_id, device_id, algorithm, key_id)
;
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts)
;
CREATE INDEX registration_nonces_created ON registration_nonces (created_ts)
