package signature

import (
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
