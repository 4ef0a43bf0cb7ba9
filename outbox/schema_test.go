package outbox_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/outbox"
)

const orderSchema = `{
  "type": "object",
  "required": ["id", "amount"],
  "properties": {
    "id": {"type": "string"},
    "amount": {"type": "number", "minimum": 0},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["sku"]}}
}`

func TestSchemaValidation(t *testing.T) {
	t.Parallel()
	s, err := outbox.CompileSchema(json.RawMessage(orderSchema))
	require.NoError(t, err)
	tests := []struct {
		name, data string
		fields     []string
	}{
		{"valid", `{"id":"o1","amount":3,"items":[{"sku":"a"}]}`, nil},
		{"missing field", `{"id":"o1"}`, []string{"/data"}},
		{"wrong type", `{"id":1,"amount":3}`, []string{"/data/id"}},
		{"below minimum", `{"id":"o1","amount":-1}`, []string{"/data/amount"}},
		{"nested via $ref", `{"id":"o1","amount":1,"items":[{"sku":"a"},{}]}`, []string{"/data/items/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := outbox.ValidateData(s, json.RawMessage(tt.data), "/data")
			if tt.fields == nil {
				require.NoError(t, err)
				return
			}
			var se *outbox.SchemaError
			require.True(t, errors.As(err, &se), "%v", err)
			var fields []string
			for _, v := range se.Violations {
				fields = append(fields, v.Field)
				require.NotEmpty(t, v.Message)
			}
			require.Equal(t, tt.fields, fields, se.Error())
		})
	}
}

func TestSchemaRefusesBadSchemas(t *testing.T) {
	t.Parallel()
	for name, schema := range map[string]string{
		"not json":         `{`,
		"bad keyword type": `{"type": 5}`,
		"local file ref":   `{"$ref": "file:///etc/passwd"}`,
		"remote ref":       `{"$ref": "https://example.com/schema.json"}`,
	} {
		_, err := outbox.CompileSchema(json.RawMessage(schema))
		require.Error(t, err, name)
	}
}
