package signature

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// verifyScript verifies each case with the reference Standard Webhooks library
// and prints one line per case: ok or the error.
const verifyScript = `
import json, sys
from standardwebhooks.webhooks import Webhook
for c in json.load(open(sys.argv[1])):
    try:
        Webhook(c["secret"]).verify(c["body"], c["headers"])
        print("ok")
    except Exception as e:
        print("fail: " + type(e).__name__)
`

// TestSignaturesVerifyWithTheReferenceLibrary checks our signatures with the
// Standard Webhooks reference verifier (PyPI package standardwebhooks), not
// only with our own Verify.
func TestSignaturesVerifyWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	require.NoError(t, err, "python3 is needed for the reference verifier")
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir() // no HOME: install beside the other temporary files
	}
	lib := filepath.Join(cache, "ecs-standardwebhooks-1.1.0")
	if _, err := os.Stat(filepath.Join(lib, "standardwebhooks")); err != nil {
		out, err := exec.Command(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
			"--target", lib, "standardwebhooks==1.1.0").CombinedOutput()
		require.NoError(t, err, "installing the reference verifier from PyPI: %s", out)
	}

	secretA, _ := NewSecret()
	secretB, _ := NewSecret()
	keyA, _ := Key(secretA)
	keyB, _ := Key(secretB)
	now := time.Now()
	body := `{"type":"order.created","timestamp":"2026-11-25T08:00:00.000000Z","data":{"id":1,"note":"ünïcode"}}`
	headers := func(id, sig string) map[string]string {
		return map[string]string{"webhook-id": id, "webhook-timestamp": strconv.FormatInt(now.Unix(), 10), "webhook-signature": sig}
	}
	cases := []struct {
		Secret  string            `json:"secret"`
		Body    string            `json:"body"`
		Headers map[string]string `json:"headers"`
		want    string
	}{
		{secretA, body, headers("evt_1", Sign(keyA, "evt_1", now, []byte(body))), "ok"},
		// During a rotation both signatures are sent; either secret verifies.
		{secretA, body, headers("evt_2", Sign(keyB, "evt_2", now, []byte(body))+" "+Sign(keyA, "evt_2", now, []byte(body))), "ok"},
		{secretB, body, headers("evt_2", Sign(keyB, "evt_2", now, []byte(body))+" "+Sign(keyA, "evt_2", now, []byte(body))), "ok"},
		// Tampering is caught.
		{secretA, body + " ", headers("evt_3", Sign(keyA, "evt_3", now, []byte(body))), "fail"},
		{secretB, body, headers("evt_4", Sign(keyA, "evt_4", now, []byte(body))), "fail"},
	}
	path := filepath.Join(t.TempDir(), "cases.json")
	raw, err := json.Marshal(cases)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	cmd := exec.Command(python, "-c", verifyScript, path)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+lib)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(cases), "%s", out)
	for i, c := range cases {
		require.True(t, strings.HasPrefix(lines[i], c.want), "case %d: reference verifier said %q", i, lines[i])
	}
}
