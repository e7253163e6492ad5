//go:build race

package deploy

// underRace: the mutation proofs run one mutation per check under the race
// detector, which adds nothing to parsing files and slows it several times
// over; every check is still proved by a regression it catches. .ci/run
// also runs the suite without the race detector, with every mutation.
const underRace = true
