package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/eventconfigservice/ecs/delivery"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// listDeliveries lists deliveries newest first, each with its attempts.
func (a *API) listDeliveries(c *gin.Context) {
	q := &query{c: c}
	f := delivery.Filter{EventID: q.uuid("event_id"), SubscriptionID: q.uuid("subscription_id"), Status: q.str("status"),
		Since: q.time("since"), Until: q.time("until"), Before: q.cursor(), Limit: q.limit()}
	if f.Status != nil && !delivery.ValidStatus(*f.Status) {
		q.bad("status", "must be pending, succeeded, dead or cancelled")
	}
	if !q.ok() {
		return
	}
	ds, more, err := a.deliveries.ListDeliveries(c, f)
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, pageOf(ds, more, func(d delivery.Delivery) string { return idCursor(d.ID) }))
}

func (a *API) getDelivery(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	d, err := a.deliveries.GetDelivery(c, id)
	if err != nil {
		a.fail(c, err, "delivery "+id.String())
		return
	}
	c.JSON(http.StatusOK, d)
}

// deliveryAction serves POST /v1/deliveries/{id}:retry. (gin cannot route a
// literal ":verb" after a parameter, so the verb is split off here.)
func (a *API) deliveryAction(c *gin.Context) {
	raw, verb, _ := strings.Cut(c.Param("id"), ":")
	id, err := uuid.Parse(raw)
	if err != nil || verb != "retry" {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusNotFound, "", "no route POST "+c.Request.URL.Path))
		return
	}
	d, err := a.deliveries.RetryDelivery(c, id)
	if errors.Is(err, delivery.ErrNotRetryable) {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusConflict, "not-retryable",
			"the delivery is being attempted right now, or its subscription was deleted"))
		return
	}
	if err != nil {
		a.fail(c, err, "delivery "+id.String())
		return
	}
	c.JSON(http.StatusAccepted, d)
}
