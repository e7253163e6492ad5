package signertest

import (
	"net"
	"sync/atomic"
	"testing"
)

// Trap is a loopback listener that only counts the connections it gets:
// the address a hostile value would send ocisigner to, for tests that
// must show nothing was sent there.
type Trap struct {
	Addr string // host:port on 127.0.0.1
	hits atomic.Int64
}

// NewTrap listens until the test ends.
func NewTrap(t testing.TB) *Trap {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trap{Addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.hits.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tr
}

// Hits is how many connections reached the trap.
func (tr *Trap) Hits() int64 { return tr.hits.Load() }
