//go:build !race

package deploy

// underRace: see race_on_test.go.
const underRace = false
