// Package api holds the types shared by the daemon xlbd and the CLI xlbctl:
// the YAML config file, the JSON bodies of the local HTTP API, and their
// validation.
//
// Every parse or decode returns either a fully valid, normalised value
// (defaults applied, names in canonical case, addresses in canonical form)
// or one error line that names the field path and the bad value, e.g.
//
//	line 12: services[1].backends[0].address "198.18.0.300": not an IP address
//
// Such errors are *FieldError values. Nothing is ever half-applied: a value
// that fails validation is left as it was.
package api
