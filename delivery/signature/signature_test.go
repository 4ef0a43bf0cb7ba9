package signature

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example of the Standard Webhooks specification's reference libraries.
func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	key, err := Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	secret, err := NewSecret()
	require.NoError(t, err)
	key, err := Key(secret)
	require.NoError(t, err)
	require.Len(t, key, 32)
	now := time.Unix(1700000000, 0)
	body := []byte(`{"a":1}`)
	sig := Sign(key, "id1", now, body)

	require.NoError(t, Verify(secret, "id1", "1700000000", "v1,bogus "+sig, body, now, 5*time.Minute))
	require.Error(t, Verify(secret, "id2", "1700000000", sig, body, now, 5*time.Minute))
	require.Error(t, Verify(secret, "id1", "1700000000", sig, []byte(`{"a":2}`), now, 5*time.Minute))
	require.Error(t, Verify(secret, "id1", "1700000000", sig, body, now.Add(time.Hour), 5*time.Minute))
}

func TestKeyRejectsBadSecrets(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "abc", "whsec_", "whsec_!!!", "whsec_c2hvcnQ=", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		_, err := Key(s)
		require.ErrorIs(t, err, ErrBadSecret, s)
	}
}

func TestV1a(t *testing.T) {
	t.Parallel()
	s, err := NewSigningKey()
	require.NoError(t, err)
	key, err := SigningKey(s)
	require.NoError(t, err)
	pub := PublicKeysOf(key)
	cheap, err := PublicKey(s)
	require.NoError(t, err)
	require.Equal(t, pub.PublicKey, cheap)
	_, err = PublicKey("whsk_c2hvcnQ=")
	require.ErrorIs(t, err, ErrBadSigningKey)
	now := time.Unix(1700000000, 0)
	body := []byte(`{"a":1}`)
	sig := SignV1a(key, "id1", now, body)
	require.True(t, strings.HasPrefix(sig, "v1a,"))

	require.NoError(t, VerifyV1a(pub.PublicKey, "id1", "1700000000", "v1,bogus "+sig, body, now, 5*time.Minute))
	require.Error(t, VerifyV1a(pub.PublicKey, "id2", "1700000000", sig, body, now, 5*time.Minute))
	require.Error(t, VerifyV1a(pub.PublicKey, "id1", "1700000000", sig, []byte(`{"a":2}`), now, 5*time.Minute))
	require.Error(t, VerifyV1a(pub.PublicKey, "id1", "1700000000", sig, body, now.Add(time.Hour), 5*time.Minute))
	other, _ := NewSigningKey()
	otherKey, _ := SigningKey(other)
	require.Error(t, VerifyV1a(PublicKeysOf(otherKey).PublicKey, "id1", "1700000000", sig, body, now, 5*time.Minute))
}

func TestSigningKeyRejectsBadKeys(t *testing.T) {
	t.Parallel()
	good, _ := NewSigningKey()
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(good, SigningKeyPrefix))
	raw[40] ^= 1 // the public half no longer belongs to the seed
	for _, s := range []string{"", "whsk_", "whsk_!!!", "whsk_c2hvcnQ=", strings.TrimPrefix(good, SigningKeyPrefix),
		SigningKeyPrefix + base64.StdEncoding.EncodeToString(raw), "whsec_" + strings.TrimPrefix(good, SigningKeyPrefix)} {
		_, err := SigningKey(s)
		require.ErrorIs(t, err, ErrBadSigningKey, s)
	}
}
