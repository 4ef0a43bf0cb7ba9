#!/usr/bin/env bash
# Lints the API contracts in docs/:
#   - both files parse as YAML, declare openapi 3.1.0 / asyncapi 3.0.0, and every
#     local $ref resolves (python3 + PyYAML; always runs);
#   - docs/event-config-openapi.yaml with Redocly CLI (recommended rules, see
#     docs/redocly.yaml);
#   - docs/event-webhook-asyncapi.yaml with the AsyncAPI CLI (parser + its
#     governance rules).
# The two linters come from the npm registry through npx (cached after the first
# run); their telemetry is switched off. Without npx only the first check runs.
# Override the pinned versions with REDOCLY_CLI / ASYNCAPI_CLI.
# The request/response contract itself is tested by api/contract_test.go.
set -euo pipefail
cd "$(dirname "$0")/.."

openapi=docs/event-config-openapi.yaml
asyncapi=docs/event-webhook-asyncapi.yaml
redocly=${REDOCLY_CLI:-@redocly/cli@2.77.0}
asyncapi_cli=${ASYNCAPI_CLI:-@asyncapi/cli@6.2.0}

echo "== YAML, versions and local \$refs"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 - "$openapi" "$asyncapi" <<'EOF'
import sys, yaml

def resolve(doc, ref):
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node

def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)

failed = False
for path, key, want in ((sys.argv[1], "openapi", "3.1.0"), (sys.argv[2], "asyncapi", "3.0.0")):
    with open(path) as f:
        doc = yaml.safe_load(f)
    if str(doc.get(key)) != want:
        print(f"{path}: {key} is {doc.get(key)!r}, want {want}", file=sys.stderr)
        failed = True
    for ref in refs(doc):
        if not ref.startswith("#/"):
            print(f"{path}: external $ref {ref}", file=sys.stderr)
            failed = True
            continue
        try:
            resolve(doc, ref)
        except (KeyError, IndexError, ValueError, TypeError):
            print(f"{path}: $ref {ref} does not resolve", file=sys.stderr)
            failed = True
    print(f"{path}: {key} {want}, parsed")
sys.exit(1 if failed else 0)
EOF

if ! command -v npx >/dev/null; then
  echo "npx not found: skipping Redocly and AsyncAPI CLI (only the basic check ran)" >&2
  exit 0
fi

echo "== Redocly CLI ($redocly): $openapi"
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  npx --yes "$redocly" lint --config docs/redocly.yaml --format=codeframe "$openapi"

echo "== AsyncAPI CLI ($asyncapi_cli): $asyncapi"
# CI=true turns off the CLI's usage metrics (they would go to New Relic).
CI=true SUPPRESS_NO_CONFIG_WARNING=1 NODE_NO_WARNINGS=1 \
  npx --yes "$asyncapi_cli" validate --fail-severity=warn "$asyncapi"
