package credentials

import "time"

// Clock is the time credentials are judged by and the background loop
// sleeps on. Tests inject one they move by hand (credentialstest.Clock), so
// that no test waits on a real timer for a refresh.
type Clock interface {
	Now() time.Time
	// Until returns a channel that receives once the clock reaches t. It
	// takes a time, not a duration, so that a clock moved between reading
	// Now and asking cannot make a waiter miss its time.
	Until(t time.Time) <-chan time.Time
}

// systemClock is the real time.
type systemClock struct{}

func (systemClock) Now() time.Time                     { return time.Now() }
func (systemClock) Until(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }
