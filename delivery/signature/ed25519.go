package signature

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Asymmetric ("v1a") signatures of the Standard Webhooks specification: ed25519
// over the same content as v1 (id + "." + timestamp + "." + body). Only the
// platform holds the signing key; subscribers verify with the public key, so a
// leaked verification key lets nobody forge a webhook.
//
// Keys are serialised as the specification asks: "whsk_" + base64 of the
// signing key (the 64-byte ed25519 private key, seed then public key, as Svix
// stores it) and "whpk_" + base64 of the 32-byte public key.
const (
	SigningKeyPrefix = "whsk_"
	PublicKeyPrefix  = "whpk_"
)

// Signature schemes a subscription can ask for.
const (
	SchemeV1  = "v1"  // HMAC-SHA256 with the subscription's secret
	SchemeV1a = "v1a" // ed25519 with the subscription's signing key
)

// ErrBadSigningKey means a signing key is not "whsk_" + base64 of a 64-byte
// ed25519 private key.
var ErrBadSigningKey = errors.New(`signing key must be "whsk_" followed by the base64 of a 64-byte ed25519 private key`)

// NewSigningKey returns a fresh serialised ed25519 signing key.
func NewSigningKey() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("signature: ed25519 key: %w", err)
	}
	return SigningKeyPrefix + base64.StdEncoding.EncodeToString(priv), nil
}

// SigningKey decodes a serialised signing key. It checks that the public half
// belongs to the seed, so a corrupted key fails here, not at the subscriber.
func SigningKey(s string) (ed25519.PrivateKey, error) {
	raw, ok := strings.CutPrefix(s, SigningKeyPrefix)
	if !ok {
		return nil, ErrBadSigningKey
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != ed25519.PrivateKeySize {
		return nil, ErrBadSigningKey
	}
	key := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if !key.Equal(ed25519.PrivateKey(b)) {
		return nil, ErrBadSigningKey
	}
	return key, nil
}

// PublicKey returns the "whpk_" form of a serialised signing key's public
// half, read from its second 32 bytes without the check SigningKey makes (a
// scalar multiplication): cheap enough for every subscription a list shows.
// Signing still goes through SigningKey, so a corrupted key cannot sign.
func PublicKey(signingKey string) (string, error) {
	raw, ok := strings.CutPrefix(signingKey, SigningKeyPrefix)
	if !ok {
		return "", ErrBadSigningKey
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != ed25519.PrivateKeySize {
		return "", ErrBadSigningKey
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(b[ed25519.SeedSize:]), nil
}

// PublicKeys is a signing key's public half in the forms verifiers take.
type PublicKeys struct {
	// PublicKey is "whpk_" + base64 of the raw 32-byte key (the specification's
	// form; Svix and the proposed reference libraries read it).
	PublicKey string `json:"public_key"`
	// SPKI is base64 of the DER SubjectPublicKeyInfo, which Java's KeyFactory,
	// OpenSSL and Node's crypto.createPublicKey read.
	SPKI string `json:"spki"`
	// JWK is the key as a JSON Web Key (RFC 8037).
	JWK JWK `json:"jwk"`
}

// JWK is an OKP JSON Web Key.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// PublicKeysOf derives the public forms of a signing key.
func PublicKeysOf(key ed25519.PrivateKey) PublicKeys {
	pub := key.Public().(ed25519.PublicKey)
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for an ed25519 key
	return PublicKeys{
		PublicKey: PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub),
		SPKI:      base64.StdEncoding.EncodeToString(der),
		JWK:       JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Use: "sig", Alg: "EdDSA"},
	}
}

// SignV1a returns the "v1a," signature of one message.
func SignV1a(key ed25519.PrivateKey, id string, ts time.Time, body []byte) string {
	msg := make([]byte, 0, len(id)+len(body)+22)
	msg = append(msg, id...)
	msg = append(msg, '.')
	msg = strconv.AppendInt(msg, ts.Unix(), 10)
	msg = append(msg, '.')
	msg = append(msg, body...)
	return SchemeV1a + "," + base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// VerifyV1a checks a received message against a "whpk_" public key: one of the
// space-separated v1a signatures must verify, and the timestamp must be within
// tolerance of now.
func VerifyV1a(publicKey, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	raw, ok := strings.CutPrefix(publicKey, PublicKeyPrefix)
	if !ok {
		return errors.New("signature: public key must start with " + PublicKeyPrefix)
	}
	pub, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return errors.New("signature: public key must be the base64 of 32 bytes")
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("signature: bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature: timestamp outside tolerance")
	}
	msg := []byte(id + "." + timestamp + "." + string(body))
	for _, s := range strings.Fields(signatures) {
		b64, ok := strings.CutPrefix(s, SchemeV1a+",")
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
			return nil
		}
	}
	return errors.New("signature: no matching v1a signature")
}
