package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

// sdkCalls makes the SDK's calls of TestInterceptOCIGoSDK: GetNamespace, a
// PutObject whose body the SDK streams (it signs no body for it), and a
// POST with a body (CreateBucket), noting the protocol of each answer.
func sdkCalls(config string, res *sdkResult) error {
	p, err := common.ConfigurationProviderFromFile(config, "")
	if err != nil {
		return err
	}
	c, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := c.GetNamespace(ctx, objectstorage.GetNamespaceRequest{})
	if err != nil {
		return fmt.Errorf("GetNamespace: %w", err)
	}
	res.Namespace, res.Protos["GetNamespace"] = *ns.Value, ns.RawResponse.Proto
	size := int64(sdkUploadSize)
	put, err := c.PutObject(ctx, objectstorage.PutObjectRequest{
		NamespaceName: ns.Value, BucketName: common.String("b"), ObjectName: common.String("o"),
		ContentLength: &size, PutObjectBody: io.NopCloser(io.LimitReader(repeatReader('x'), size)),
	})
	if err != nil {
		return fmt.Errorf("PutObject: %w", err)
	}
	res.Protos["PutObject"] = put.RawResponse.Proto
	post, err := c.CreateBucket(ctx, objectstorage.CreateBucketRequest{NamespaceName: ns.Value, CreateBucketDetails: objectstorage.CreateBucketDetails{
		Name: common.String("b"), CompartmentId: common.String("ocid1.compartment.oc1..x"),
	}})
	if err != nil && !strings.Contains(err.Error(), "json") {
		return fmt.Errorf("CreateBucket: %w", err)
	}
	if post.RawResponse != nil {
		res.Protos["CreateBucket"] = post.RawResponse.Proto
	}
	return nil
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func newFakeClock() *credentialstest.Clock { return credentialstest.NewClock(time.Now()) }

// waitUntil polls cond until it holds; a minute without is a failure (no
// timing is asserted: the bound only ends a test that would hang).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
