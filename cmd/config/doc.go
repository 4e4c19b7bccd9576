// Package config is the schema of xlb's desired state: the YAML config file
// of xlbd and the JSON bodies of the API requests that change it (a Service
// is both a config file entry and an API body), with their validation.
//
// Every parse or decode returns either a fully valid, normalised value
// (defaults applied, names in canonical case, addresses in canonical form)
// or one error line that names the field path and the bad value, e.g.
//
//	line 12: services[1].backends[0].address "198.18.0.300": not an IP address
//
// Such errors are *FieldError values. Nothing is ever half-applied: a value
// that fails validation is left as it was.
package config
