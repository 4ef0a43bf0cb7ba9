package api

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// IdempotencyKeyHeader makes POST /v1/events safe to retry.
const IdempotencyKeyHeader = "Idempotency-Key"

// ReplayedHeader is set on the answer to a repeated idempotency key.
const ReplayedHeader = "Idempotent-Replayed"

type createSubscriptionRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	Secret      string   `json:"secret"`
}

func (a *API) createSubscription(c *gin.Context) {
	var req createSubscriptionRequest
	if !a.decode(c, &req) {
		return
	}
	var fields []ecshttp.FieldError
	if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(req.URL) > 2048 {
		fields = append(fields, ecshttp.FieldError{Field: "url", Message: "must be an absolute http or https URL without credentials (at most 2048 characters)"})
	}
	if len(req.EventTypes) == 0 || len(req.EventTypes) > 100 {
		fields = append(fields, ecshttp.FieldError{Field: "event_types", Message: "must list 1 to 100 event types"})
	}
	if len(req.Description) > 1000 {
		fields = append(fields, ecshttp.FieldError{Field: "description", Message: "must be at most 1000 characters"})
	}
	if req.Secret != "" {
		if _, err := signature.Key(req.Secret); err != nil {
			fields = append(fields, ecshttp.FieldError{Field: "secret", Message: err.Error()})
		}
	}
	if len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid subscription", fields...))
		return
	}
	known, err := a.outbox.EventTypesNamed(c, req.EventTypes)
	if err != nil {
		a.internal(c, err)
		return
	}
	var types []string
	seen := map[string]bool{}
	for i, t := range req.EventTypes {
		et, ok := known[t]
		switch {
		case !ok:
			fields = append(fields, ecshttp.FieldError{Field: "event_types[" + strconv.Itoa(i) + "]", Message: "unknown event type " + strconv.Quote(t)})
		case et.Archived:
			fields = append(fields, ecshttp.FieldError{Field: "event_types[" + strconv.Itoa(i) + "]", Message: "event type " + strconv.Quote(t) + " is archived"})
		case !seen[t]:
			seen[t] = true
			types = append(types, t)
		}
	}
	if len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("unknown event types", fields...))
		return
	}
	secret := req.Secret
	if secret == "" {
		if secret, err = signature.NewSecret(); err != nil {
			a.internal(c, err)
			return
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		a.internal(c, err)
		return
	}
	var sub delivery.Subscription
	err = a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		sub, err = a.deliveries.Tx(tx).CreateSubscription(c, delivery.Subscription{
			ID: id, URL: req.URL, EventTypes: types, Description: req.Description, Secret: secret,
		})
		shown := sub
		shown.Secret = "" // never audited
		return audit{action: "subscription.create", resourceType: "subscription", resourceID: id.String(), after: shown}, err
	})
	if err != nil {
		a.internal(c, err)
		return
	}
	c.Header("Location", "/v1/subscriptions/"+sub.ID.String())
	c.JSON(http.StatusCreated, sub) // the only response that carries the secret
}

func (a *API) listSubscriptions(c *gin.Context) {
	subs, err := a.deliveries.ListSubscriptions(c)
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, newList(subs))
}

func (a *API) getSubscription(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	sub, err := a.deliveries.GetSubscription(c, id)
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	c.JSON(http.StatusOK, sub)
}

func (a *API) deleteSubscription(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		store := a.deliveries.Tx(tx)
		before, err := store.GetSubscription(c, id) // carries no secret
		if err != nil {
			return audit{}, err
		}
		return audit{action: "subscription.delete", resourceType: "subscription", resourceID: id.String(), before: before},
			store.DeleteSubscription(c, id)
	})
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	c.Status(http.StatusNoContent)
}

type eventResponse struct {
	outbox.Event
	Deliveries []delivery.SubscriptionState `json:"deliveries"`
}

func (a *API) getEvent(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	ev, err := a.outbox.GetEvent(c, id)
	if err != nil {
		a.fail(c, err, "event "+id.String())
		return
	}
	states, err := a.deliveries.EventStates(c, id)
	if err != nil {
		a.internal(c, err)
		return
	}
	if states == nil {
		states = []delivery.SubscriptionState{}
	}
	c.JSON(http.StatusOK, eventResponse{Event: ev, Deliveries: states})
}

func pathID(c *gin.Context) (uuid.UUID, bool) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusNotFound, "", "no such resource: "+strconv.Quote(c.Param("id"))+" is not a valid id"))
		return uuid.UUID{}, false
	}
	return id, true
}
