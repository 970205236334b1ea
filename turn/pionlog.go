package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogFactory sends pion's logs to slog, one level quieter than pion
// says: pion logs client mistakes (bad TLS handshakes, unknown channels,
// data from peers without permission) at Error, Warn and Info, and those
// are Debug-worthy here (STYLE.md: client mistakes are never Error). pion's
// Debug and Trace are per-packet and are dropped.
type pionLogFactory struct {
	log *slog.Logger
}

func (f pionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct {
	log *slog.Logger
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}

func (l pionLogger) Info(msg string)               { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, a ...any) { l.logf(slog.LevelDebug, format, a...) }
func (l pionLogger) Warn(msg string)               { l.logf(slog.LevelInfo, "%s", msg) }
func (l pionLogger) Warnf(format string, a ...any) { l.logf(slog.LevelInfo, format, a...) }
func (l pionLogger) Error(msg string)              { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Errorf(format string, a ...any) {
	l.logf(slog.LevelWarn, format, a...)
}
