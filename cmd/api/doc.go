// Package api is xlbd's local HTTP API as its clients see it: the wire
// types of its answers (Status, Flow, Error) and a Client for the unix
// socket. The request bodies are package config's Service and Backend, the
// same types as the config file's entries.
package api
