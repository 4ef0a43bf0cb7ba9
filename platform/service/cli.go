package service

import (
	"fmt"
	"os"
)

// Command reads a role binary's command line: no argument serves, "migrate"
// migrates the database and exits; anything else is a one-line usage error.
func Command(name string) (migrate bool) {
	switch {
	case len(os.Args) == 1:
		return false
	case len(os.Args) == 2 && os.Args[1] == "migrate":
		return true
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown arguments %q; usage: %s [migrate] (configuration comes from ECS_* environment variables)\n", name, os.Args[1:], name)
		os.Exit(2)
		return false
	}
}
