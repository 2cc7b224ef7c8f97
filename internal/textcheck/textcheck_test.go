package textcheck

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheck(t *testing.T) {
	for name, tc := range map[string]struct {
		target, ctype, body string
		bad                 bool
	}{
		"clean":               {"/api/v1/devices/dev-1?q=a", "", "", false},
		"NUL in the path":     {"/api/v1/devices/a%00b", "", "", true},
		"bad UTF-8 path":      {"/devices/%FF", "", "", true},
		"NUL in a query":      {"/devices?q=%00", "", "", true},
		"bad UTF-8 query key": {"/devices?%C3=1", "", "", true},
		"JSON \\u0000":        {"/x", "application/json", `{"reason":"a\u0000"}`, true},
		"JSON escaped \\\\":   {"/x", "application/json", `{"reason":"a\\u0000"}`, false},
		"JSON raw bad UTF-8":  {"/x", "application/json", "{\"a\":\"\xff\"}", true},
		"form NUL":            {"/login", "application/x-www-form-urlencoded", "username=a%00&password=x", true},
		"form fine":           {"/login", "application/x-www-form-urlencoded", "username=alice&password=%C3%A9", false},
		"binary body":         {"/ocsp", "application/ocsp-request", "\x00\xff", false},
	} {
		r := httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader(tc.body))
		if tc.ctype != "" {
			r.Header.Set("Content-Type", tc.ctype)
		}
		what := Check(r)
		if (what != "") != tc.bad {
			t.Errorf("%s: Check = %q, want bad=%v", name, what, tc.bad)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != tc.body {
			t.Errorf("%s: the handler reads %q, want the body back", name, b)
		}
	}
}

// FuzzCheck: whatever passes the edge holds no NUL and no invalid UTF-8
// where handlers read text: the path, query keys and values, form fields,
// and the strings of a JSON body.
func FuzzCheck(f *testing.F) {
	f.Add("/devices/dev-1", "q=a&b=%00", []byte(`{"a":"b"}`), true)
	f.Add("/x\x00", "", []byte("a=%FF"), false)
	f.Add("/", "%C3%28=1", []byte(`{"a":"\u0000"}`), true)
	f.Fuzz(func(t *testing.T, path, query string, body []byte, isJSON bool) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
		r.URL.Path, r.URL.RawQuery = path, query
		ctype := "application/x-www-form-urlencoded"
		if isJSON {
			ctype = "application/json"
		}
		r.Header.Set("Content-Type", ctype)
		if Check(r) != "" {
			return
		}
		ok := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
		if !ok(path) {
			t.Fatalf("path %q passed", path)
		}
		for k, vs := range r.URL.Query() {
			for _, v := range append(vs, k) {
				if !ok(v) {
					t.Fatalf("query text %q passed", v)
				}
			}
		}
		if !isJSON {
			q, _ := url.ParseQuery(string(body))
			for k, vs := range q {
				for _, v := range append(vs, k) {
					if !ok(v) {
						t.Fatalf("form text %q passed", v)
					}
				}
			}
			return
		}
		var v any
		if json.Unmarshal(body, &v) != nil {
			return // the handler's decoder refuses it
		}
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case string:
				if strings.ContainsRune(x, 0) {
					t.Fatalf("JSON string %q with a NUL passed", x)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for k, e := range x {
					walk(k)
					walk(e)
				}
			}
		}
		walk(v)
	})
}
