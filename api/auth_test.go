package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/logging"
)

func bearer(cred string) []string { return []string{"Authorization", "Bearer " + cred} }

func TestAPIKeysAndScopes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	r := b.do(t, "POST", "/v1/api-keys", `{"name":"producer","scopes":["events:write"]}`)
	require.Equal(t, 201, r.code, r.raw)
	key := r.body["key"].(string)
	require.True(t, strings.HasPrefix(key, api.APIKeyPrefix))
	id := r.body["id"].(string)

	require.Equal(t, 202, b.do(t, "POST", "/v1/events", `{"type":"order.created","data":{}}`, bearer(key)...).code)
	denied := b.do(t, "GET", "/v1/event-types", "", bearer(key)...)
	require.Equal(t, 403, denied.code)
	require.Contains(t, denied.body["type"], "insufficient-scope")
	require.Contains(t, denied.header.Get("WWW-Authenticate"), `scope="config:read"`)
	require.Equal(t, 403, b.do(t, "POST", "/v1/api-keys", `{"name":"x","scopes":["admin"]}`, bearer(key)...).code, "no escalation")

	list := b.do(t, "GET", "/v1/api-keys", "")
	require.Equal(t, 200, list.code)
	require.Contains(t, list.raw, key[:10], "the prefix is shown")
	require.NotContains(t, list.raw, key, "the key is never shown again")

	require.Equal(t, 204, b.do(t, "DELETE", "/v1/api-keys/"+id, "").code)
	require.Eventually(t, func() bool {
		return b.do(t, "POST", "/v1/events", `{"type":"order.created","data":{}}`, bearer(key)...).code == 401
	}, 5*time.Second, 50*time.Millisecond, "a revoked key stops working within a second")
	require.Equal(t, 404, b.do(t, "DELETE", "/v1/api-keys/01a21173-0000-7000-8000-00000000ffff", "").code)

	for name, body := range map[string]string{
		"no scopes":     `{"name":"x","scopes":[]}`,
		"unknown scope": `{"name":"x","scopes":["events:delete"]}`,
		"no name":       `{"scopes":["admin"]}`,
		"expired":       `{"name":"x","scopes":["admin"],"expires_at":"2020-01-01T00:00:00Z"}`,
	} {
		require.Equal(t, 422, b.do(t, "POST", "/v1/api-keys", body).code, name)
	}
	soon := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	short := b.do(t, "POST", "/v1/api-keys", `{"name":"short","scopes":["events:read"],"expires_at":"`+soon+`"}`)
	require.Equal(t, 201, short.code, short.raw)
	skey := short.body["key"].(string)
	require.Equal(t, 200, b.do(t, "GET", "/v1/events", "", bearer(skey)...).code)
	require.Eventually(t, func() bool { return b.do(t, "GET", "/v1/events", "", bearer(skey)...).code == 401 },
		10*time.Second, 100*time.Millisecond, "an expired key stops working")
}

func TestEveryRouteNeedsItsScope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	routes := []struct{ method, path, scope string }{
		{"POST", "/v1/event-types", "config:write"},
		{"GET", "/v1/event-types", "config:read"},
		{"GET", "/v1/event-types/a.b", "config:read"},
		{"PATCH", "/v1/event-types/a.b", "config:write"},
		{"DELETE", "/v1/event-types/a.b", "config:write"},
		{"POST", "/v1/subscriptions", "config:write"},
		{"GET", "/v1/subscriptions", "config:read"},
		{"DELETE", "/v1/subscriptions/01a21173-0000-7000-8000-000000000001", "config:write"},
		{"POST", "/v1/events", "events:write"},
		{"POST", "/v1/events:batch", "events:write"},
		{"GET", "/v1/events", "events:read"},
		{"GET", "/v1/deliveries", "deliveries:read"},
		{"POST", "/v1/deliveries/01a21173-0000-7000-8000-000000000001:retry", "deliveries:write"},
		{"POST", "/v1/subscriptions/01a21173-0000-7000-8000-000000000001:replay", "deliveries:write"},
		{"POST", "/v1/subscriptions/01a21173-0000-7000-8000-000000000001:enable", "config:write"},
		{"GET", "/v1/subscriptions/01a21173-0000-7000-8000-000000000001/public-key", "config:read"},
		{"GET", "/v1/api-keys", "admin"},
	}
	keys := map[string]string{}
	for _, s := range api.Scopes {
		r := b.do(t, "POST", "/v1/api-keys", `{"name":"k","scopes":["`+s+`"]}`)
		require.Equal(t, 201, r.code)
		keys[s] = r.body["key"].(string)
	}
	for _, rt := range routes {
		for scope, key := range keys {
			code := b.do(t, rt.method, rt.path, `{}`, bearer(key)...).code
			if scope == rt.scope || scope == "admin" {
				require.NotEqual(t, 403, code, "%s %s with %s", rt.method, rt.path, scope)
			} else {
				require.Equal(t, 403, code, "%s %s with %s", rt.method, rt.path, scope)
			}
		}
	}
}

func jwtBundle(t *testing.T, cfg api.Config) *testBundle {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	return serve(t, pool, cfg, logging.Discard())
}

func claims(scope string, mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": "https://issuer.example", "aud": "ecs", "sub": "svc-1", "scope": scope,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestJWTWithSharedSecret(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 32)
	b := jwtBundle(t, api.Config{JWTHS256Secret: secret, JWTIssuer: "https://issuer.example", JWTAudience: "ecs"})
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		require.NoError(t, err)
		return s
	}
	require.Equal(t, 200, b.do(t, "GET", "/v1/event-types", "", bearer(sign(claims("config:read", nil)))...).code)
	require.Equal(t, 403, b.do(t, "POST", "/v1/event-types", `{"name":"a.b"}`, bearer(sign(claims("config:read", nil)))...).code)
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("admin", nil)).SignedString([]byte(strings.Repeat("x", 32)))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("admin", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, tok := range map[string]string{
		"wrong issuer":   sign(claims("admin", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })),
		"wrong audience": sign(claims("admin", func(c jwt.MapClaims) { c["aud"] = "other" })),
		"expired":        sign(claims("admin", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
		"no expiry":      sign(claims("admin", func(c jwt.MapClaims) { delete(c, "exp") })),
		"wrong key":      wrongKey,
		"alg none":       none,
	} {
		require.Equal(t, 401, b.do(t, "GET", "/v1/event-types", "", bearer(tok)...).code, name)
	}
	require.Equal(t, 401, b.do(t, "GET", "/v1/event-types", "").code, "static tokens are off when not configured")
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestJWTWithJWKS(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	jwks := fmt.Sprintf(`{"keys":[
		{"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig","x":%q,"y":%q},
		{"kty":"RSA","kid":"rsa1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(ecKey.PublicKey.X.FillBytes(make([]byte, 32))), b64(ecKey.PublicKey.Y.FillBytes(make([]byte, 32))),
		b64(rsaKey.N.Bytes()), b64(big.NewInt(int64(rsaKey.E)).Bytes()))
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(jwks))
	}))
	t.Cleanup(keys.Close)
	b := jwtBundle(t, api.Config{JWTJWKSURL: keys.URL, JWTIssuer: "https://issuer.example", JWTAudience: "ecs"})

	sign := func(m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	require.Equal(t, 200, b.do(t, "GET", "/v1/event-types", "", bearer(sign(jwt.SigningMethodES256, "ec1", ecKey, claims("config:read", nil)))...).code)
	require.Equal(t, 200, b.do(t, "GET", "/v1/event-types", "", bearer(sign(jwt.SigningMethodRS256, "rsa1", rsaKey, claims("config:read", nil)))...).code)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.Equal(t, 401, b.do(t, "GET", "/v1/event-types", "", bearer(sign(jwt.SigningMethodES256, "ec1", other, claims("config:read", nil)))...).code, "signed by a key not in the set")
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("admin", nil)).SignedString([]byte(strings.Repeat("s", 32)))
	require.Equal(t, 401, b.do(t, "GET", "/v1/event-types", "", bearer(hs)...).code, "HS256 is off without a shared secret")
}
