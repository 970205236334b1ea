package main

import "errors"

// Errors returned by the switchboard command. Messages carry the
// "switchboard:" prefix; callers wrap them with %w and add the detail (the
// config key, the file, the flag) that tells the user what to fix.
var (
	// ErrUsage is a command-line mistake: unknown sub-command, bad flag.
	ErrUsage = errors.New("switchboard: usage")
	// ErrConfig is an invalid configuration value; the wrapping error names
	// the key.
	ErrConfig = errors.New("switchboard: invalid configuration")
	// ErrNoConfig means serve was started without --dev, --config or a
	// server name.
	ErrNoConfig = errors.New("switchboard: no configuration")
	// ErrKeyFile is a signing key file that cannot be parsed.
	ErrKeyFile = errors.New("switchboard: bad signing key file")
	// ErrRegister is a failed `switchboard register` request.
	ErrRegister = errors.New("switchboard: registration failed")
	// ErrServe is a listener that failed while serving.
	ErrServe = errors.New("switchboard: serve")
	// ErrUnhealthy is a `switchboard health` probe that got no 200.
	ErrUnhealthy = errors.New("switchboard: not healthy")
	// ErrDoctor is a `switchboard doctor` run that found a problem.
	ErrDoctor = errors.New("switchboard: doctor found problems")
)

// fieldError is one invalid configuration value. Key is the dotted YAML
// path (for example "turn.relay_port_min"); Msg says what is wrong.
type fieldError struct {
	Key string
	Msg string
}

func (e *fieldError) Error() string { return e.Key + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrConfig) true for every field error.
func (e *fieldError) Unwrap() error { return ErrConfig }
