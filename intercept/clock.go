package intercept

import "time"

// Clock is the time leaves are minted, rotated and rate-limited by. It has
// the shape of signer/credentials' Clock, so that tests move one by hand
// (credentialstest.Clock) and see a leaf of a few seconds rotate without
// waiting for it.
type Clock interface {
	Now() time.Time
	// Until returns a channel that receives once the clock reaches t.
	Until(t time.Time) <-chan time.Time
}

// SystemClock is the real time.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                     { return time.Now() }
func (systemClock) Until(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }
