package main

import "strings"

// Proxy is section 5: xlb against HAProxy in TCP mode on the same lab.
type Proxy struct {
	NotRun string `json:"not_run,omitempty"`
}

// Markdown renders section 5.
func (p *Proxy) Markdown() string {
	var b strings.Builder
	b.WriteString("### 5. Versus a proxy (HAProxy, TCP mode)\n\n")
	if p.NotRun != "" {
		b.WriteString("not run: " + p.NotRun + "\n\n")
	}
	return b.String()
}
