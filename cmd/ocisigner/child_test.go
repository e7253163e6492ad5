package main

import (
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"

	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Some tests need a second process: a client whose memory must not count
// as the server's. The test binary runs itself with envChild naming the
// role; TestMain then plays it instead of running tests.
const envChild = "OCISIGNER_TEST_CHILD"

const childIdleClient = "idle-client"

var childRoles = map[string]func(arg string) any{
	childIdleClient: idleClient,
}

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		play, ok := childRoles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
			os.Exit(2)
		}
		if err := json.NewEncoder(os.Stdout).Encode(play(os.Getenv(envChild + "_ARG"))); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	credentialstest.UseFixedSessionKeys()
	os.Exit(m.Run())
}

// runChild runs role in a child process and returns what it printed.
func runChild(t *testing.T, role, arg string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+role, envChild+"_ARG="+arg)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", role, err)
	}
	return out
}
