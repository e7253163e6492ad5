//go:build !cgo

package signer_test

import (
	"crypto/rsa"
	"testing"
)

const cgoBuild = false

func requireOpenSSL(testing.TB, *rsa.PrivateKey) {}

func requireRefused(testing.TB, *rsa.PrivateKey) {}
