// Package signature signs webhooks the Standard Webhooks way: the signature
// header is "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)),
// where key is the base64 part of a "whsec_" secret.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret.
const SecretPrefix = "whsec_"

// Secret key lengths accepted from users, in bytes (Svix accepts 24 to 64).
const (
	MinKeyBytes = 24
	MaxKeyBytes = 64
)

// ErrBadSecret means a secret is not "whsec_" + base64 of 24 to 64 bytes.
var ErrBadSecret = fmt.Errorf("secret must be %q followed by the base64 of %d to %d random bytes", SecretPrefix, MinKeyBytes, MaxKeyBytes)

// NewSecret returns "whsec_" + base64 of 32 random bytes.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("signature: random secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// Key decodes a secret into its HMAC key.
func Key(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < MinKeyBytes || len(key) > MaxKeyBytes {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the webhook-signature value for one message.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a received message the way a subscriber should: one of the
// space-separated signatures must match, and the timestamp must be within
// tolerance of now.
func Verify(secret, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := Key(secret)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("signature: bad timestamp")
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return errors.New("signature: timestamp outside tolerance")
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("signature: no matching signature")
}
