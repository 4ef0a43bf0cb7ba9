// Package logging builds the process logger: log/slog everywhere, with tint's
// coloured text when writing to a terminal and JSON otherwise (for log shippers).
package logging

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// New returns a logger writing to w. format is auto, text or json; level is
// debug, info, warn or error (validated by config.Common.Validate).
func New(w io.Writer, level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "tint"
		}
	}
	var h slog.Handler
	switch format {
	case "tint":
		h = tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly})
	case "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})
	default:
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})
	}
	return slog.New(h)
}

// Discard is a logger that writes nothing, for tests that do not look at logs.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
