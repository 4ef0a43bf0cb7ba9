package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// subscriptionAction serves POST /v1/subscriptions/{id}:replay and
// {id}:enable (gin cannot route a literal ":verb" after a parameter, so the verb
// is split off here).
func (a *API) subscriptionAction(c *gin.Context) {
	raw, verb, _ := strings.Cut(c.Param("id"), ":")
	id, err := uuid.Parse(raw)
	switch {
	case err != nil:
	case verb == "replay":
		if allowed(c, ScopeDeliveriesWrite) {
			a.replay(c, id)
		}
		return
	case verb == "enable":
		if allowed(c, ScopeConfigWrite) {
			a.enable(c, id)
		}
		return
	}
	ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusNotFound, "", "no route POST "+c.Request.URL.Path))
}

// enable re-activates a subscription, typically one the worker disabled. Its
// deliveries that were waiting go out (from where it stopped); with
// replay_missed, so do the events accepted while it was disabled. The run of
// failures that disabled it is forgotten.
func (a *API) enable(c *gin.Context, id uuid.UUID) {
	var req struct {
		ReplayMissed bool `json:"replay_missed"`
	}
	if c.Request.ContentLength != 0 && !a.decode(c, &req) {
		return
	}
	var out delivery.Subscription
	var replayed int64
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		store := a.deliveries.Tx(tx)
		cur, err := store.GetSubscription(c, id)
		if err != nil {
			return audit{}, err
		}
		next := cur
		next.State, next.DisabledReason = delivery.StateActive, nil
		if out, err = store.UpdateSubscription(c, next, cur.Version); err != nil {
			return audit{}, err
		}
		if req.ReplayMissed && cur.DisabledAt != nil {
			if replayed, err = store.Replay(c, id, *cur.DisabledAt, time.Now(), false); err != nil {
				return audit{}, err
			}
		}
		return audit{action: "subscription.enable", resourceType: "subscription", resourceID: id.String(), before: cur,
			after: gin.H{"subscription": out, "replay_missed": req.ReplayMissed, "replayed": replayed}}, nil
	})
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	c.Header("ETag", etag(out.Version))
	c.JSON(http.StatusOK, gin.H{"subscription": out, "replayed": replayed})
}

// publicKey answers the keys that verify the subscription's v1a signatures:
// the current one, and during a rotation the previous one.
func (a *API) publicKey(c *gin.Context) {
	sub, ok := a.pathSubscription(c)
	if !ok {
		return
	}
	sg, err := a.deliveries.SigningSecrets(c, sub.ID)
	if err != nil {
		a.fail(c, err, "subscription "+sub.ID.String())
		return
	}
	if sg.SigningKey == nil { // created before v1a existed
		k, err := a.deliveries.EnsureSigningKey(c, sub.ID)
		if err != nil {
			a.fail(c, err, "subscription "+sub.ID.String())
			return
		}
		sg.SigningKey = &k
	}
	key, err := signature.SigningKey(*sg.SigningKey)
	if err != nil {
		a.internal(c, err)
		return
	}
	out := gin.H{}
	cur := signature.PublicKeysOf(key)
	out["public_key"], out["spki"], out["jwk"] = cur.PublicKey, cur.SPKI, cur.JWK
	if sg.PreviousSigningKey != nil && sub.PreviousSecretUntil != nil {
		if old, err := signature.SigningKey(*sg.PreviousSigningKey); err == nil {
			out["previous"] = signature.PublicKeysOf(old)
			out["previous_until"] = sub.PreviousSecretUntil
		}
	}
	c.JSON(http.StatusOK, out)
}

// replay serves POST /v1/subscriptions/{id}:replay.
func (a *API) replay(c *gin.Context, id uuid.UUID) {
	var req struct {
		Since      *time.Time `json:"since"`
		Until      *time.Time `json:"until"`
		OnlyFailed bool       `json:"only_failed"`
	}
	if !a.decode(c, &req) {
		return
	}
	until := time.Now()
	if req.Until != nil {
		until = *req.Until
	}
	if req.Since == nil || !req.Since.Before(until) {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid replay", ecshttp.FieldError{Field: "since", Message: "is required and must be before until"}))
		return
	}
	var n int64
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		n, err = a.deliveries.Tx(tx).Replay(c, id, *req.Since, until, req.OnlyFailed)
		return audit{action: "subscription.replay", resourceType: "subscription", resourceID: id.String(),
			after: gin.H{"since": req.Since, "until": until, "only_failed": req.OnlyFailed, "deliveries": n}}, err
	})
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"deliveries": n})
}

// redrive makes dead deliveries due again: the dead-letter topic's redrive,
// done where the deliveries live. They keep their webhook-ids.
func (a *API) redrive(c *gin.Context) {
	var req struct {
		SubscriptionID *uuid.UUID `json:"subscription_id"`
		Since          *time.Time `json:"since"`
		Until          *time.Time `json:"until"`
	}
	if !a.decode(c, &req) {
		return
	}
	var n int64
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		n, err = a.deliveries.Tx(tx).Redrive(c, req.SubscriptionID, req.Since, req.Until)
		resource := "*"
		if req.SubscriptionID != nil {
			resource = req.SubscriptionID.String()
		}
		return audit{action: "deliveries.redrive", resourceType: "subscription", resourceID: resource,
			after: gin.H{"since": req.Since, "until": req.Until, "deliveries": n}}, err
	})
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"deliveries": n})
}

// testAttempt is what POST /v1/subscriptions/{id}/test answers.
type testAttempt struct {
	WebhookID    string  `json:"webhook_id"`
	StatusCode   int     `json:"status_code,omitempty"`
	LatencyMS    float64 `json:"latency_ms"`
	Succeeded    bool    `json:"succeeded"`
	Error        string  `json:"error,omitempty"`
	ResponseBody string  `json:"response_body,omitempty"`
}

// testSubscription sends a synthetic, signed event ("ecs.test" unless another
// type is named) to the subscription now and answers with the attempt. It is
// not recorded as a delivery.
func (a *API) testSubscription(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	var req struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if c.Request.ContentLength != 0 && !a.decode(c, &req) {
		return
	}
	if req.Type == "" {
		req.Type = "ecs.test"
	}
	if len(req.Data) == 0 {
		req.Data = json.RawMessage(`{"test":true}`)
	}
	sub, err := a.deliveries.GetSubscription(c, id)
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	signing, err := a.deliveries.SigningSecrets(c, id)
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	keys, edKeys, err := signing.Keys()
	if err != nil {
		a.internal(c, err)
		return
	}
	var data []byte
	if data, err = json.Marshal(req.Data); err != nil || !json.Valid(req.Data) {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid test event", ecshttp.FieldError{Field: "data", Message: "must be JSON"}))
		return
	}
	var timeout time.Duration
	if sub.TimeoutMS != nil {
		timeout = time.Duration(*sub.TimeoutMS) * time.Millisecond
	}
	webhookID := "test_" + uuid.Must(uuid.NewV7()).String()
	res := a.sender.Send(c, sender.Request{URL: sub.URL, ID: webhookID, Body: outbox.WebhookBody(req.Type, time.Now(), data),
		Keys: keys, SigningKeys: edKeys, Headers: sub.Headers, Timeout: timeout})
	out := testAttempt{WebhookID: webhookID, StatusCode: res.StatusCode, LatencyMS: float64(res.Latency.Microseconds()) / 1000,
		Succeeded: res.Succeeded(), ResponseBody: res.ResponseBody}
	if res.Err != nil {
		out.Error = res.Err.Error()
	}
	c.JSON(http.StatusOK, out)
}
