// Package test holds xlb's integration tests (build tag "integration"):
// they build a veth/netns lab (package test/lab), run the real data plane
// and real TCP/UDP servers and clients in it, and assert end to end.
package test
