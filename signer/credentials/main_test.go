package credentials_test

import (
	"os"
	"testing"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

func TestMain(m *testing.M) {
	credentialstest.UseFixedSessionKeys()
	os.Exit(m.Run())
}
