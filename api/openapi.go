package api

import (
	_ "embed"
	"net/http"
)

// openapiSpec is the API's OpenAPI 3.1 description; a test keeps it and the
// router in step.
//
//go:embed openapi.yaml
var openapiSpec []byte

func serveSpec(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openapiSpec)
}
