package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xlb-lb/xlb/cmd/api"
)

const pageConfig = `
services:
  - vip: 198.18.1.1
    port: 80
    scheduler: maglev
    backends: [{address: 198.18.0.11}, {address: 198.18.0.12, weight: 0}]
  - {vip: "2001:2:0:1::1", port: 53, protocol: udp, backends: [{address: "2001:2::11"}]}
` + bgpSection

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The page and its two files are served from the binary, and refer to
// nothing outside the listener: every src, href and url() is a relative
// path that the same handler answers.
func TestStatusPageServed(t *testing.T) {
	d, _, _ := startBGP(t, pageConfig, Options{})
	h := d.MetricsHandler()

	r := get(t, h, "GET", "/")
	page := body(t, r)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("the page has no viewport meta (phones)")
	}
	refs := regexp.MustCompile(`(?:src|href)\s*=\s*"([^"]*)"|url\(\s*['"]?([^'")]*)`)
	scheme := regexp.MustCompile(`(?i)^[a-z][a-z0-9+.-]*:|^//`)
	wantType := map[string]string{"ui/status.css": "text/css", "ui/status.js": "text/javascript", "status.json": "application/json", "metrics": "text/plain"}
	files := map[string]string{"/": page}
	for _, path := range []string{"ui/status.css", "ui/status.js"} {
		r := get(t, h, "GET", "/"+path)
		files[path] = body(t, r)
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), wantType[path]) {
			t.Errorf("GET /%s: %d %q", path, r.StatusCode, r.Header.Get("Content-Type"))
		}
	}
	seen := map[string]bool{}
	for name, text := range files {
		for _, m := range refs.FindAllStringSubmatch(text, -1) {
			ref := m[1] + m[2]
			if scheme.MatchString(ref) || strings.HasPrefix(ref, "/") && name != "/" {
				t.Errorf("%s refers to %q: not a relative path on this listener", name, ref)
				continue
			}
			seen[ref] = true
			r := get(t, h, "GET", "/"+ref)
			if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), wantType[ref]) {
				t.Errorf("%s refers to %q: GET answers %d %q", name, ref, r.StatusCode, r.Header.Get("Content-Type"))
			}
		}
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") || strings.Contains(text, "@import") {
			t.Errorf("%s names an address outside the listener", name)
		}
	}
	for _, ref := range []string{"ui/status.css", "ui/status.js", "status.json"} {
		if !seen[ref] {
			t.Errorf("the page does not load %s (refs seen: %v)", ref, seen)
		}
	}
	// The script polls the feed it is served with.
	if !strings.Contains(files["ui/status.js"], `fetch("status.json"`) {
		t.Error("status.js does not fetch status.json")
	}

	// No listing, no second copy of the page, unknown paths 404.
	for _, p := range []string{"/ui/", "/ui/index.html", "/nope", "/ui/nope.js"} {
		if r := get(t, h, "GET", p); r.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
	// The metrics are still there.
	if r := get(t, h, "GET", "/metrics"); r.StatusCode != 200 || !strings.Contains(body(t, r), "xlb_build_info") {
		t.Errorf("GET /metrics after adding the page: %d", r.StatusCode)
	}
}

// The feed is the API's status, byte for byte, with the fields the page
// shows: scheduler, forward, announcement and its peers, backend states.
func TestStatusPageFeed(t *testing.T) {
	d, _, _ := startBGP(t, pageConfig, Options{})
	read := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return read } // the two reads say the same time
	r := get(t, d.MetricsHandler(), "GET", "/status.json")
	feed := body(t, r)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status.json: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	apiBody := body(t, get(t, d.Handler(), "GET", "/v1/status"))
	if feed != apiBody {
		t.Fatalf("the feed is not the API's status:\nfeed: %s\napi:  %s", feed, apiBody)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(feed), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Time.Equal(read) || len(st.Services) != 2 {
		t.Fatalf("time %v, services: %+v", st.Time, st.Services)
	}
	s := st.Services[0]
	if s.Scheduler != "maglev" || s.Forward == "" || !s.Announced || strings.Join(s.AnnouncedTo, ",") != "198.18.0.1" {
		t.Errorf("service: %+v", s)
	}
	if len(s.Backends) != 2 || s.Backends[0].State != api.StateUp || s.Backends[1].State != api.StateDrain {
		t.Errorf("backends: %+v", s.Backends)
	}

	// Without BGP no peer is named.
	d2, _, _ := startFromFile(t, oneService, Options{})
	var st2 api.Status
	if err := json.Unmarshal([]byte(body(t, get(t, d2.MetricsHandler(), "GET", "/status.json"))), &st2); err != nil {
		t.Fatal(err)
	}
	if st2.BGP || st2.Services[0].Announced || st2.Services[0].AnnouncedTo != nil {
		t.Errorf("without bgp: %+v", st2.Services[0])
	}
}

// The page is read-only: GET and HEAD only, everything else 405.
func TestStatusPageReadOnly(t *testing.T) {
	d, _, _ := startFromFile(t, oneService, Options{})
	srv := httptest.NewServer(d.MetricsHandler())
	defer srv.Close()
	for _, p := range []string{"/", "/status.json", "/ui/status.js", "/ui/status.css", "/metrics"} {
		for _, m := range []string{"HEAD", "GET", "POST", "PUT", "DELETE", "PATCH"} {
			req, err := http.NewRequest(m, srv.URL+p, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			text := body(t, r)
			_ = r.Body.Close()
			switch m {
			case "GET", "HEAD":
				if r.StatusCode != 200 || (m == "HEAD") != (text == "") {
					t.Errorf("%s %s: %d, %d bytes", m, p, r.StatusCode, len(text))
				}
			default:
				if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("%s %s: %d (Allow %q), want 405", m, p, r.StatusCode, r.Header.Get("Allow"))
				}
			}
		}
	}
	// The API socket does not serve the page.
	if r := get(t, d.Handler(), "GET", "/"); r.StatusCode != 404 {
		t.Errorf("the API serves /: %d", r.StatusCode)
	}
}
