package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// IdempotencyKeyHeader makes POST /v1/events safe to retry.
const IdempotencyKeyHeader = "Idempotency-Key"

// ReplayedHeader is set on the answer to a repeated idempotency key.
const ReplayedHeader = "Idempotent-Replayed"

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
