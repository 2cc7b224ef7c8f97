package api

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v3"
)

type specDoc struct {
	OpenAPI string                              `yaml:"openapi"`
	Paths   map[string]map[string]specOperation `yaml:"paths"`
}

type specOperation struct {
	Security  []map[string][]string `yaml:"security"`
	Responses map[string]any        `yaml:"responses"`
}

// TestOpenAPIMatchesRouter fails when a chi route is missing from
// openapi.yaml, or the spec names a route that does not exist, or an
// operation lacks responses, or an admin operation lacks a security requirement.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc specDoc
	if err := yaml.Unmarshal(openapiSpec, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	spec := map[string]specOperation{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			spec[strings.ToUpper(method)+" "+path] = op
		}
	}
	a := &API{cfg: Config{Tokens: fakeAccounts{}}, log: discard(), err: errorWriter{discard()}}
	routed := map[string]bool{}
	err := chi.Walk(a.routes().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routed[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]bool{}
	for _, rt := range adminRoutes {
		admin[rt.method+" /api/v1"+rt.pattern] = true
	}
	var missing, extra []string
	for r := range routed {
		op, ok := spec[r]
		if !ok {
			missing = append(missing, r)
			continue
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s: the spec declares no responses", r)
		}
		if admin[r] && (len(op.Security) == 0 || op.Security[0]["adminToken"] == nil) {
			t.Errorf("%s: an admin route without the adminToken security requirement", r)
		}
	}
	for r := range spec {
		if !routed[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.yaml: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.yaml names routes that do not exist: %v", extra)
	}
	if len(routed) < len(adminRoutes)+2 {
		t.Fatalf("walked only %d routes", len(routed))
	}
}
