// Package clienttest has no code of its own: its tests drive the clients of
// pkg/ (genesys, orgs, metrics) against gcsim over real HTTP, and check that
// every operation pkg/genesys implements is exercised with a response valid
// against the spec. They live here because pkg must not depend on services,
// not even in tests: layers point down.
package clienttest
