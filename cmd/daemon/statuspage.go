package daemon

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the status page: one HTML file, its script and its style,
// served as they are (no template, no external asset).
//
//go:embed web
var web embed.FS

// statusPage adds the read-only status page to the metrics listener's mux:
// GET / is the page, GET /status.json the feed it polls (the same status
// as the API's GET /v1/status, so the page and xlbctl status -o json agree)
// and GET /ui/ its script and style. These patterns take GET and HEAD
// only; the mux answers other methods 405 with an Allow header. Nothing
// here changes state, so it belongs on the metrics listener and not on the
// API socket.
func (d *Daemon) statusPage(mux *http.ServeMux) {
	files, _ := fs.Sub(web, "web") // the directory is embedded: it exists
	static := http.FileServerFS(files)
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeFileFS(w, r, files, "index.html")
	}
	mux.HandleFunc("GET /{$}", page)
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", noIndex(static)))
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		d.writeStatus(w, http.StatusOK)
	})
}

// noIndex refuses directory listings and index.html under /ui/: only the
// page's own files are served there.
func noIndex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path[len(r.URL.Path)-1] == '/' || r.URL.Path == "index.html" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
