// Package docs holds the platform's machine-readable contracts and embeds them,
// so the binaries serve exactly the files in the repository and the contract
// tests check the same bytes that clients download.
package docs

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the REST API
// (event-config-openapi.yaml). It is embedded so the API can serve it at
// GET /openapi.yaml without a file on disk, and so api/contract_test.go validates
// requests and responses against the very document that is served.
//
//go:embed event-config-openapi.yaml
var OpenAPI []byte

// AsyncAPI is the AsyncAPI 3.0 description of what the platform sends
// (event-webhook-asyncapi.yaml): the Kafka event topics, the dead-letter topic
// and the signed webhook requests. It is embedded so it ships with the binaries
// beside the OpenAPI document and cannot drift from the repository copy.
//
//go:embed event-webhook-asyncapi.yaml
var AsyncAPI []byte
