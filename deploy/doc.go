// Package deploy holds the checks for ocisigner's deployment files: the Envoy
// bootstrap (../envoy.yaml), the Compose project (../docker-compose.yml), the
// image recipe (Dockerfile in this folder), ../.dockerignore, the kustomize
// folders (kubernetes/) and the Helm chart (helm/ocisigner), rendered with
// Helm's Go library, with its Istio and Envoy Gateway objects.
//
// No Envoy binary or Docker engine is needed. The tests parse each file with
// the same libraries the real tools are generated from or built on:
// envoy.yaml is decoded strictly into Envoy's v3 Bootstrap (go-control-plane,
// the Envoy version docker-compose.yml pins) and every typed_config is
// unpacked and run through Envoy's proto validation rules; docker-compose.yml
// is loaded with compose-go, the loader Docker Compose itself uses. Each test
// then asserts the fail-closed choices the product depends on, and a mutation
// table proves every assertion fails when the file regresses.
//
// The package has no non-test code beyond this comment.
package deploy
