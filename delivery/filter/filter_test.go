package filter

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFilter(t *testing.T) {
	t.Parallel()
	var data any
	require.NoError(t, json.Unmarshal([]byte(`{"amount": 120, "currency": "EUR", "items": [{"sku": "a"}], "tags": ["vip"]}`), &data))
	tests := []struct {
		expr string
		want bool
		err  bool
	}{
		{`data.amount > 100`, true, false},
		{`data.amount > 100 && data.currency == "USD"`, false, false},
		{`"vip" in data.tags`, true, false},
		{`size(data.items) == 1 && data.items[0].sku == "a"`, true, false},
		{`type.startsWith("order.") && key == "o-1"`, true, false},
		{`has(data.missing) && data.missing == 1`, false, false},
		{`data.missing == 1`, false, true}, // no such key: no delivery, and the error says why
	}
	for _, tt := range tests {
		f, err := Compile(tt.expr)
		require.NoError(t, err, tt.expr)
		got, err := f.Match("order.paid", "o-1", data)
		require.Equal(t, tt.want, got, tt.expr)
		require.Equal(t, tt.err, err != nil, "%s: %v", tt.expr, err)
	}
}

func TestCompileRefuses(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"", "data.amount >", `"not a bool"`, "1 + 2", "unknown_var == 1"} {
		_, err := Compile(expr)
		require.Error(t, err, expr)
	}
}
