package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/platform/db"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

//go:embed queries.sql
var queriesSQL string

var q struct {
	CreateAPIKey string `sql:"create_api_key"`
	FindAPIKey   string `sql:"find_api_key"`
	ListAPIKeys  string `sql:"list_api_keys"`
	RevokeAPIKey string `sql:"revoke_api_key"`
	GetAPIKey    string `sql:"get_api_key"`
	InsertAudit  string `sql:"insert_audit"`
	ListAudit    string `sql:"list_audit"`
}

func init() { db.MustLoadQueries(queriesSQL, &q) }

// Scopes a credential can carry. ScopeAdmin grants every other.
const (
	ScopeEventsWrite     = "events:write"
	ScopeEventsRead      = "events:read"
	ScopeConfigRead      = "config:read"
	ScopeConfigWrite     = "config:write"
	ScopeDeliveriesRead  = "deliveries:read"
	ScopeDeliveriesWrite = "deliveries:write"
	ScopeAdmin           = "admin"
)

// Scopes lists every scope.
var Scopes = []string{ScopeEventsWrite, ScopeEventsRead, ScopeConfigRead, ScopeConfigWrite, ScopeDeliveriesRead, ScopeDeliveriesWrite, ScopeAdmin}

// APIKeyPrefix starts every API key.
const APIKeyPrefix = "ecs_"

// keyCacheTTL is how long a checked API key is trusted without asking the
// database again: a revocation takes effect within it.
const keyCacheTTL = time.Second

// principal is who made a request and what they may do.
type principal struct {
	subject string
	kind    string // "token", "api_key" or "jwt"
	scopes  []string
}

func (p principal) may(scope string) bool {
	return slices.Contains(p.scopes, ScopeAdmin) || slices.Contains(p.scopes, scope)
}

const principalKey = "ecs.principal"

// authenticator checks bearer credentials: a configured token (all scopes), an
// API key, or a JWT.
type authenticator struct {
	tokens   [][32]byte
	pool     *pgxpool.Pool
	hs256    []byte
	jwks     keyfunc.Keyfunc
	issuer   string
	audience string

	mu    sync.Mutex
	cache map[[32]byte]cachedKey
}

type cachedKey struct {
	p     principal
	until time.Time
}

func newAuthenticator(ctx context.Context, cfg Config, pool *pgxpool.Pool) (*authenticator, error) {
	a := &authenticator{pool: pool, hs256: []byte(cfg.JWTHS256Secret), issuer: cfg.JWTIssuer, audience: cfg.JWTAudience, cache: map[[32]byte]cachedKey{}}
	for _, t := range cfg.Tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	if cfg.JWTJWKSURL != "" {
		kf, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWTJWKSURL})
		if err != nil {
			return nil, fmt.Errorf("api: JWKS from %s: %w", cfg.JWTJWKSURL, err)
		}
		a.jwks = kf
	}
	return a, nil
}

var errBadCredentials = errors.New("the bearer credentials are not valid")

// authenticate finds the principal behind a bearer credential.
func (a *authenticator) authenticate(ctx context.Context, cred string) (principal, error) {
	sum := sha256.Sum256([]byte(cred))
	match := 0
	for _, t := range a.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	if match == 1 {
		return principal{subject: "token", kind: "token", scopes: []string{ScopeAdmin}}, nil
	}
	if strings.HasPrefix(cred, APIKeyPrefix) {
		return a.apiKey(ctx, sum)
	}
	if strings.Count(cred, ".") == 2 && (a.hs256 != nil || a.jwks != nil) {
		return a.jwt(cred)
	}
	return principal{}, errBadCredentials
}

func (a *authenticator) apiKey(ctx context.Context, sum [32]byte) (principal, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[sum]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.p, nil
	}
	var id uuid.UUID
	var name string
	var scopes []string
	err := a.pool.QueryRow(ctx, q.FindAPIKey, sum[:]).Scan(&id, &name, &scopes)
	if db.IsNoRows(err) {
		return principal{}, errBadCredentials
	}
	if err != nil {
		return principal{}, fmt.Errorf("api: look up API key: %w", err)
	}
	p := principal{subject: "api_key:" + id.String(), kind: "api_key", scopes: scopes}
	a.mu.Lock()
	if len(a.cache) > 10000 {
		a.cache = map[[32]byte]cachedKey{}
	}
	a.cache[sum] = cachedKey{p: p, until: now.Add(keyCacheTTL)}
	a.mu.Unlock()
	return p, nil
}

// jwt verifies a token: HS256 with the shared secret, or RS256/ES256 (and the
// other asymmetric algorithms) with a key from the JWKS; issuer, audience and
// expiry are checked. Scopes come from "scope" (space-separated) or "scp".
func (a *authenticator) jwt(raw string) (principal, error) {
	var algs []string
	if a.hs256 != nil {
		algs = append(algs, "HS256")
	}
	if a.jwks != nil {
		algs = append(algs, "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() == "HS256" {
			return a.hs256, nil
		}
		return a.jwks.Keyfunc(t)
	}, jwt.WithValidMethods(algs), jwt.WithIssuer(a.issuer), jwt.WithAudience(a.audience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return principal{}, errBadCredentials
	}
	p := principal{kind: "jwt"}
	p.subject, _ = claims.GetSubject()
	if s, ok := claims["scope"].(string); ok {
		p.scopes = strings.Fields(s)
	}
	if list, ok := claims["scp"].([]any); ok {
		for _, s := range list {
			if str, ok := s.(string); ok {
				p.scopes = append(p.scopes, str)
			}
		}
	}
	return p, nil
}

// auth is the /v1 middleware: 401 without valid credentials.
func (a *API) auth(c *gin.Context) {
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", `Bearer realm="ecs"`)
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token, API key or JWT>"))
		return
	}
	p, err := a.authn.authenticate(c, tok)
	if errors.Is(err, errBadCredentials) {
		c.Header("WWW-Authenticate", `Bearer realm="ecs", error="invalid_token"`)
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusUnauthorized, "unauthorized", err.Error()))
		return
	}
	if err != nil {
		a.internal(c, err)
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

// need answers 403 unless the caller holds scope (or admin).
func need(scope string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if allowed(c, scope) {
			c.Next()
		}
	}
}

// allowed says whether the caller has scope, and answers 403 when not. Routes
// whose scope depends on the request (custom methods) call it themselves.
func allowed(c *gin.Context, scope string) bool {
	p, _ := c.Get(principalKey)
	if pr, ok := p.(principal); ok && pr.may(scope) {
		return true
	}
	c.Header("WWW-Authenticate", `Bearer realm="ecs", error="insufficient_scope", scope="`+scope+`"`)
	ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusForbidden, "insufficient-scope", "this needs the scope "+scope))
	return false
}

// APIKey describes a key; Key is set only in the answer that creates it.
type APIKey struct {
	ID        uuid.UUID  `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Key       string     `json:"key,omitempty"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

type createAPIKeyRequest struct {
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (a *API) createAPIKey(c *gin.Context) {
	var req createAPIKeyRequest
	if !a.decode(c, &req) {
		return
	}
	var fields []ecshttp.FieldError
	if req.Name == "" || len(req.Name) > 200 {
		fields = append(fields, ecshttp.FieldError{Field: "name", Message: "is required, at most 200 characters"})
	}
	if len(req.Scopes) == 0 {
		fields = append(fields, ecshttp.FieldError{Field: "scopes", Message: "must list at least one of " + strings.Join(Scopes, ", ")})
	}
	for i, s := range req.Scopes {
		if !slices.Contains(Scopes, s) {
			fields = append(fields, ecshttp.FieldError{Field: fmt.Sprintf("scopes[%d]", i), Message: "must be one of " + strings.Join(Scopes, ", ")})
		}
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(time.Now()) {
		fields = append(fields, ecshttp.FieldError{Field: "expires_at", Message: "must be in the future"})
	}
	if len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid API key", fields...))
		return
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		a.internal(c, err)
		return
	}
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(key))
	k := APIKey{ID: uuid.Must(uuid.NewV7()), Name: req.Name, Prefix: key[:len(APIKeyPrefix)+6], Key: key, Scopes: slices.Compact(slices.Sorted(slices.Values(req.Scopes))), ExpiresAt: req.ExpiresAt}
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		if err := tx.QueryRow(c, q.CreateAPIKey, k.ID, k.Name, k.Prefix, sum[:], k.Scopes, k.ExpiresAt).Scan(&k.CreatedAt); err != nil {
			return audit{}, err
		}
		shown := k
		shown.Key = "" // never audited
		return audit{action: "api_key.create", resourceType: "api_key", resourceID: k.ID.String(), after: shown}, nil
	})
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusCreated, k) // the only answer that carries the key
}

func (a *API) listAPIKeys(c *gin.Context) {
	rows, _ := a.pool.Query(c, q.ListAPIKeys)
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanAPIKey(r) })
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, pageOf(keys, false, nil))
}

func (a *API) revokeAPIKey(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		before, err := scanAPIKey(tx.QueryRow(c, q.GetAPIKey, id))
		if err != nil {
			return audit{}, err
		}
		var got uuid.UUID
		if err := tx.QueryRow(c, q.RevokeAPIKey, id).Scan(&got); err != nil {
			return audit{}, err
		}
		after, err := scanAPIKey(tx.QueryRow(c, q.GetAPIKey, id))
		return audit{action: "api_key.revoke", resourceType: "api_key", resourceID: id.String(), before: before, after: after}, err
	})
	if db.IsNoRows(err) {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusNotFound, "", "no API key "+id.String()))
		return
	}
	if err != nil {
		a.internal(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func scanAPIKey(r pgx.Row) (APIKey, error) {
	var k APIKey
	return k, r.Scan(&k.ID, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt)
}
