package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseScenarios(t *testing.T) {
	t.Parallel()
	ids, err := parseScenarios("1, 5,2,5")
	require.NoError(t, err)
	require.Equal(t, []int{1, 5, 2}, ids)
	for _, bad := range []string{"", "0", "8", "1,,2", "x"} {
		_, err := parseScenarios(bad)
		require.Error(t, err, bad)
	}
}

func TestBadFlagsAreOneLine(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-nope"}, {"-scenarios", "9"}, {"extra"}, {"-quick=maybe"}, {"-out", "/no/such/dir/x.md"}} {
		err := run(args)
		require.Error(t, err, args)
		require.NotContains(t, err.Error(), "\n", args)
	}
}
